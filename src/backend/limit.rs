//! Per-backend admission: how many requests may be in flight and how many may start per minute.
//!
//! The minute limit is a sliding-window log rather than a token bucket: a bucket allows its
//! burst on top of the refill within one minute, which would exceed the provider's quota that
//! we are trying to respect. Retries are requests too and go through the same gate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::BackendError;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Limiter {
    concurrency: Arc<Semaphore>,
    rpm: Option<RateWindow>,
}

impl Limiter {
    pub fn new(concurrency: u32, requests_per_minute: Option<u32>) -> Self {
        Limiter {
            concurrency: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            rpm: requests_per_minute.map(RateWindow::new),
        }
    }

    /// Waits for a request slot; the slot is held until the permit is dropped.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, BackendError> {
        let permit = Arc::clone(&self.concurrency)
            .acquire_owned()
            .await
            // Nothing closes this semaphore; the error exists only for API completeness.
            .map_err(|_| BackendError::Config("request limiter closed".into()))?;
        if let Some(rpm) = &self.rpm {
            rpm.wait().await;
        }
        Ok(permit)
    }
}

#[derive(Debug)]
pub struct RateWindow {
    limit: usize,
    starts: Mutex<VecDeque<Instant>>,
}

impl RateWindow {
    pub fn new(per_minute: u32) -> Self {
        RateWindow {
            limit: per_minute.max(1) as usize,
            starts: Mutex::new(VecDeque::new()),
        }
    }

    /// Returns once a request may start without more than `limit` starts in any 60 s window.
    /// The lock is held while waiting so waiters are served in order.
    pub async fn wait(&self) {
        let mut starts = self.starts.lock().await;
        loop {
            let now = Instant::now();
            while starts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                starts.pop_front();
            }
            if starts.len() < self.limit {
                starts.push_back(now);
                return;
            }
            if let Some(oldest) = starts.front().copied() {
                tokio::time::sleep_until(oldest + WINDOW).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rpm_never_exceeded_in_any_window() {
        let window = Arc::new(RateWindow::new(60));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..120 {
            let w = Arc::clone(&window);
            tasks.push(tokio::spawn(async move {
                w.wait().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        assert!(t0.elapsed() >= Duration::from_secs(60));
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < WINDOW)
                .count();
            assert!(
                in_window <= 60,
                "{in_window} starts within 60 s of start {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let limiter = Arc::new(Limiter::new(3, None));
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (l, a, p) = (Arc::clone(&limiter), Arc::clone(&active), Arc::clone(&peak));
            tasks.push(tokio::spawn(async move {
                let _permit = l.acquire().await.unwrap();
                let now = a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                a.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}

//! Where each pane sits for a terminal size. PURE and shared by the view (to draw) and the state
//! machine (to hit-test mouse clicks and size scrolling), so both always agree.

/// A rectangle in terminal cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Area {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
}

impl Area {
    pub const fn new(x: u16, y: u16, w: u16, h: u16) -> Area {
        Area { x, y, w, h }
    }

    pub fn contains(&self, col: u16, row: u16) -> bool {
        col >= self.x
            && row >= self.y
            && u32::from(col) < u32::from(self.x) + u32::from(self.w)
            && u32::from(row) < u32::from(self.y) + u32::from(self.h)
    }

    /// The inside of a one-cell border.
    pub fn inner(&self) -> Area {
        Area {
            x: self.x.saturating_add(1),
            y: self.y.saturating_add(1),
            w: self.w.saturating_sub(2),
            h: self.h.saturating_sub(2),
        }
    }

    fn split_h(self, left: u16) -> (Area, Area) {
        let left = left.min(self.w);
        (
            Area::new(self.x, self.y, left, self.h),
            Area::new(self.x + left, self.y, self.w - left, self.h),
        )
    }

    fn split_v(self, top: u16) -> (Area, Area) {
        let top = top.min(self.h);
        (
            Area::new(self.x, self.y, self.w, top),
            Area::new(self.x, self.y + top, self.w, self.h - top),
        )
    }
}

/// The panes of the main screen, plus the bars every view shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Panes {
    pub header: Area,
    pub status: Area,
    /// Everything between header and status: where the compare and history views draw.
    pub body: Area,
    pub tree: Area,
    pub cases: Area,
    pub editor: Area,
    pub preview: Area,
    pub outputs: Area,
    /// True when the terminal is narrow and the panes are stacked.
    pub stacked: bool,
}

/// Terminals narrower than this stack the panes.
pub const STACK_BELOW: u16 = 90;

pub fn panes(width: u16, height: u16) -> Panes {
    let full = Area::new(0, 0, width, height);
    let (header, rest) = full.split_v(1);
    let (body, status) = rest.split_v(rest.h.saturating_sub(1));
    if width < STACK_BELOW {
        // Stacked: tree and cases side by side, then editor, then preview and outputs.
        let top_h = (body.h / 4).max(3);
        let (top, rest) = body.split_v(top_h);
        let (tree, cases) = top.split_h(top.w / 2);
        let editor_h = rest.h * 5 / 9;
        let (editor, bottom) = rest.split_v(editor_h);
        let (preview, outputs) = bottom.split_h(bottom.w / 2);
        return Panes {
            header,
            status,
            body,
            tree,
            cases,
            editor,
            preview,
            outputs,
            stacked: true,
        };
    }
    let left_w = if width >= 110 { 24 } else { 20 };
    let (left, right) = body.split_h(left_w);
    let (tree, cases) = left.split_v(left.h * 3 / 5);
    let (top, outputs) = right.split_v(right.h * 3 / 5);
    let (editor, preview) = top.split_h(top.w * 3 / 5);
    Panes {
        header,
        status,
        body,
        tree,
        cases,
        editor,
        preview,
        outputs,
        stacked: false,
    }
}

/// The view tabs of the header, left to right.
pub const TABS: [&str; 4] = ["Main", "Compare", "History", "Models"];
/// The tabs below [`STACK_BELOW`] columns, so the file name keeps some room.
pub const TABS_SHORT: [&str; 4] = ["Main", "Diff", "Hist", "Models"];

/// The tab labels for a header this wide.
pub fn tab_labels(width: u16) -> [&'static str; 4] {
    if width < STACK_BELOW {
        TABS_SHORT
    } else {
        TABS
    }
}

/// Columns of each header tab: `[Main] [Compare] [History] [Models]` right-aligned after the
/// title.
pub fn tab_areas(header: Area) -> Vec<Area> {
    let labels = tab_labels(header.w);
    let total: u16 = labels.iter().map(|t| t.len() as u16 + 3).sum();
    let mut x = header.x + header.w.saturating_sub(total);
    labels
        .iter()
        .map(|t| {
            let w = t.len() as u16 + 2;
            let area = Area::new(x, header.y, w, 1);
            x = x.saturating_add(w + 1);
            area
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_fit_inside_every_size() {
        for w in 0..=200u16 {
            for h in [0u16, 1, 2, 5, 20, 24, 40, 60] {
                let p = panes(w, h);
                for a in [
                    p.header, p.status, p.tree, p.cases, p.editor, p.preview, p.outputs,
                ] {
                    assert!(
                        u32::from(a.x) + u32::from(a.w) <= u32::from(w),
                        "{w}x{h} {a:?}"
                    );
                    assert!(
                        u32::from(a.y) + u32::from(a.h) <= u32::from(h),
                        "{w}x{h} {a:?}"
                    );
                }
            }
        }
        assert!(panes(60, 20).stacked);
        assert!(!panes(120, 40).stacked);
    }

    #[test]
    fn tabs_do_not_overlap() {
        let tabs = tab_areas(Area::new(0, 0, 120, 1));
        assert_eq!(tabs.len(), 4);
        assert!(tabs[0].x + tabs[0].w < tabs[1].x);
        assert!(tabs[3].x + tabs[3].w <= 120);
    }
}

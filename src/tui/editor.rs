//! A small text editor buffer: lines, a cursor, undo and redo, search, soft-wrap geometry.
//!
//! PURE. Written here rather than taken from a crate because the pane needs things the
//! maintained textarea crates do not combine for ratatui 0.29: soft wrap with a scroll that keeps
//! the cursor visible, Jinja highlighting from our own tokenizer, and error marks in the gutter.
//! Columns are counted in `char`s; prompt files are small, so undo keeps whole snapshots.

/// How many undo steps are kept.
const UNDO_LIMIT: usize = 500;

/// What the last edit was, so runs of typing undo as one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditKind {
    Insert,
    Delete,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    lines: Vec<String>,
    row: usize,
    col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    lines: Vec<String>,
    /// Cursor line (0-based).
    pub row: usize,
    /// Cursor column in chars (0-based).
    pub col: usize,
    /// First logical line shown.
    pub scroll: usize,
    undo: Vec<Snapshot>,
    redo: Vec<Snapshot>,
    last_edit: Option<EditKind>,
}

impl Default for Editor {
    fn default() -> Self {
        Editor::new("")
    }
}

fn byte_index(line: &str, col: usize) -> usize {
    line.char_indices().nth(col).map_or(line.len(), |(i, _)| i)
}

/// Rows a line of `chars` characters takes at `width` columns (at least one).
pub fn wrapped_rows(chars: usize, width: usize) -> usize {
    if width == 0 {
        return 1;
    }
    chars.div_ceil(width).max(1)
}

impl Editor {
    pub fn new(text: &str) -> Editor {
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        for line in &mut lines {
            if line.ends_with('\r') {
                line.pop();
            }
        }
        Editor {
            lines,
            row: 0,
            col: 0,
            scroll: 0,
            undo: Vec::new(),
            redo: Vec::new(),
            last_edit: None,
        }
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    fn line_chars(&self, row: usize) -> usize {
        self.lines.get(row).map_or(0, |l| l.chars().count())
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            lines: self.lines.clone(),
            row: self.row,
            col: self.col,
        }
    }

    fn restore(&mut self, s: Snapshot) {
        self.lines = s.lines;
        self.row = s.row.min(self.lines.len().saturating_sub(1));
        self.col = s.col.min(self.line_chars(self.row));
    }

    /// Records the state before an edit; consecutive edits of one kind share a step.
    fn begin_edit(&mut self, kind: EditKind) {
        if kind == EditKind::Other || self.last_edit != Some(kind) {
            self.undo.push(self.snapshot());
            if self.undo.len() > UNDO_LIMIT {
                self.undo.remove(0);
            }
        }
        self.redo.clear();
        self.last_edit = Some(kind);
    }

    /// Ends a run of typing, so the next edit is its own undo step.
    pub fn break_undo_group(&mut self) {
        self.last_edit = None;
    }

    pub fn undo(&mut self) -> bool {
        match self.undo.pop() {
            Some(s) => {
                self.redo.push(self.snapshot());
                self.restore(s);
                self.last_edit = None;
                true
            }
            None => false,
        }
    }

    pub fn redo(&mut self) -> bool {
        match self.redo.pop() {
            Some(s) => {
                self.undo.push(self.snapshot());
                self.restore(s);
                self.last_edit = None;
                true
            }
            None => false,
        }
    }

    /// Replaces the whole text as one undoable step (restore, external edits).
    pub fn replace_all(&mut self, text: &str) {
        self.begin_edit(EditKind::Other);
        let fresh = Editor::new(text);
        self.lines = fresh.lines;
        self.row = self.row.min(self.lines.len().saturating_sub(1));
        self.col = self.col.min(self.line_chars(self.row));
        self.last_edit = None;
    }

    pub fn insert_char(&mut self, c: char) {
        if c == '\n' {
            self.insert_newline();
            return;
        }
        let kind = if c.is_whitespace() {
            EditKind::Other
        } else {
            EditKind::Insert
        };
        self.begin_edit(kind);
        if kind == EditKind::Other {
            self.last_edit = Some(EditKind::Insert);
        }
        let col = self.col;
        if let Some(line) = self.lines.get_mut(self.row) {
            let at = byte_index(line, col);
            line.insert(at, c);
            self.col += 1;
        }
    }

    /// Splits the line, keeping the indentation of the line above.
    pub fn insert_newline(&mut self) {
        self.begin_edit(EditKind::Other);
        let col = self.col;
        let Some(line) = self.lines.get_mut(self.row) else {
            return;
        };
        let at = byte_index(line, col);
        let rest = line.split_off(at);
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let indent_len = indent.chars().count();
        self.lines.insert(self.row + 1, format!("{indent}{rest}"));
        self.row += 1;
        self.col = indent_len;
    }

    /// Inserts text as one undo step (bracketed paste).
    pub fn insert_text(&mut self, text: &str) {
        self.begin_edit(EditKind::Other);
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let col = self.col;
        let Some(line) = self.lines.get_mut(self.row) else {
            return;
        };
        let at = byte_index(line, col);
        let tail = line.split_off(at);
        let mut pieces = text.split('\n');
        if let Some(first) = pieces.next() {
            line.push_str(first);
        }
        let mut row = self.row;
        for piece in pieces {
            row += 1;
            self.lines.insert(row, piece.to_owned());
        }
        let end_col = self.lines[row].chars().count();
        self.lines[row].push_str(&tail);
        self.row = row;
        self.col = end_col;
        self.last_edit = None;
    }

    pub fn backspace(&mut self) {
        if self.col == 0 && self.row == 0 {
            return;
        }
        self.begin_edit(EditKind::Delete);
        if self.col > 0 {
            let col = self.col;
            if let Some(line) = self.lines.get_mut(self.row) {
                let at = byte_index(line, col - 1);
                line.remove(at);
                self.col -= 1;
            }
        } else {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.line_chars(self.row);
            self.lines[self.row].push_str(&line);
        }
    }

    pub fn delete(&mut self) {
        let chars = self.line_chars(self.row);
        if self.col >= chars && self.row + 1 >= self.lines.len() {
            return;
        }
        self.begin_edit(EditKind::Delete);
        if self.col < chars {
            let col = self.col;
            if let Some(line) = self.lines.get_mut(self.row) {
                let at = byte_index(line, col);
                line.remove(at);
            }
        } else {
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].push_str(&next);
        }
    }

    pub fn left(&mut self) {
        self.last_edit = None;
        if self.col > 0 {
            self.col -= 1;
        } else if self.row > 0 {
            self.row -= 1;
            self.col = self.line_chars(self.row);
        }
    }

    pub fn right(&mut self) {
        self.last_edit = None;
        if self.col < self.line_chars(self.row) {
            self.col += 1;
        } else if self.row + 1 < self.lines.len() {
            self.row += 1;
            self.col = 0;
        }
    }

    pub fn up(&mut self, n: usize) {
        self.last_edit = None;
        self.row = self.row.saturating_sub(n);
        self.col = self.col.min(self.line_chars(self.row));
    }

    pub fn down(&mut self, n: usize) {
        self.last_edit = None;
        self.row = (self.row + n).min(self.lines.len().saturating_sub(1));
        self.col = self.col.min(self.line_chars(self.row));
    }

    pub fn home(&mut self) {
        self.col = 0;
    }

    pub fn end(&mut self) {
        self.col = self.line_chars(self.row);
    }

    /// Moves to a 0-based line (clamped), column 0.
    pub fn goto_line(&mut self, row: usize) {
        self.last_edit = None;
        self.row = row.min(self.lines.len().saturating_sub(1));
        self.col = 0;
    }

    /// Moves the cursor to a position (clamped), e.g. from a mouse click.
    pub fn set_cursor(&mut self, row: usize, col: usize) {
        self.last_edit = None;
        self.row = row.min(self.lines.len().saturating_sub(1));
        self.col = col.min(self.line_chars(self.row));
    }

    /// Finds `query` after the cursor (wrapping around); moves there and returns true if found.
    /// Case-insensitive when the query is all lower case.
    pub fn find_next(&mut self, query: &str, include_cursor: bool) -> bool {
        if query.is_empty() {
            return false;
        }
        let fold = !query.chars().any(char::is_uppercase);
        let query: String = if fold {
            query.to_lowercase()
        } else {
            query.to_owned()
        };
        let n = self.lines.len();
        for step in 0..=n {
            let row = (self.row + step) % n.max(1);
            let Some(line) = self.lines.get(row) else {
                continue;
            };
            let hay: String = if fold {
                line.to_lowercase()
            } else {
                line.clone()
            };
            // Lower-casing can change byte lengths, so search over chars of the folded line.
            let start_col = if step == 0 {
                self.col + usize::from(!include_cursor)
            } else {
                0
            };
            if step == n && start_col == 0 {
                break;
            }
            let chars: Vec<char> = hay.chars().collect();
            let q: Vec<char> = query.chars().collect();
            if q.len() > chars.len() {
                continue;
            }
            let found =
                (start_col..=chars.len() - q.len()).find(|&i| chars[i..i + q.len()] == q[..]);
            if let Some(col) = found {
                self.row = row;
                self.col = col;
                self.last_edit = None;
                return true;
            }
        }
        false
    }

    /// Adjusts `scroll` so the cursor is visible in a pane of `height` rows and `width` text
    /// columns (`wrap`: lines wrap at `width`).
    pub fn scroll_to_cursor(&mut self, height: usize, width: usize, wrap: bool) {
        let height = height.max(1);
        if self.row < self.scroll {
            self.scroll = self.row;
            return;
        }
        let lines = &self.lines;
        let rows_of = |line: usize| {
            if wrap {
                wrapped_rows(lines.get(line).map_or(0, |l| l.chars().count()), width)
            } else {
                1
            }
        };
        let mut scroll = self.scroll;
        // Rows from the top of the pane down to and including the cursor's row.
        let cursor_row_offset = if wrap && width > 0 {
            self.col / width
        } else {
            0
        };
        // Drop lines off the top until the cursor's row fits. The sum is kept running rather
        // than recomputed per step: recomputing made a jump to the end of a long buffer
        // quadratic (seconds per key on a 10,000-line tests file, found by the TUI soak test).
        let mut used: usize =
            (scroll..self.row).map(rows_of).sum::<usize>() + cursor_row_offset + 1;
        while used > height && scroll < self.row {
            used -= rows_of(scroll);
            scroll += 1;
        }
        self.scroll = scroll;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_and_newline_keep_indent() {
        let mut e = Editor::new("  abc");
        e.end();
        e.insert_newline();
        e.insert_char('x');
        assert_eq!(e.text(), "  abc\n  x");
        assert_eq!((e.row, e.col), (1, 3));
    }

    #[test]
    fn undo_groups_typing_and_redo_restores() {
        let mut e = Editor::new("");
        for c in "hello".chars() {
            e.insert_char(c);
        }
        e.insert_char(' ');
        for c in "world".chars() {
            e.insert_char(c);
        }
        assert_eq!(e.text(), "hello world");
        assert!(e.undo());
        assert_eq!(e.text(), "hello");
        assert!(e.undo());
        assert_eq!(e.text(), "");
        assert!(!e.undo());
        assert!(e.redo());
        assert_eq!(e.text(), "hello");
    }

    #[test]
    fn backspace_and_delete_join_lines() {
        let mut e = Editor::new("ab\ncd");
        e.down(1);
        e.backspace();
        assert_eq!(e.text(), "abcd");
        e.home();
        e.delete();
        assert_eq!(e.text(), "bcd");
        let mut e = Editor::new("ab\ncd");
        e.end();
        e.delete();
        assert_eq!(e.text(), "abcd");
    }

    #[test]
    fn paste_is_one_step_and_handles_crlf() {
        let mut e = Editor::new("[]");
        e.right();
        e.insert_text("a\r\nb\nc");
        assert_eq!(e.text(), "[a\nb\nc]");
        assert_eq!((e.row, e.col), (2, 1));
        e.undo();
        assert_eq!(e.text(), "[]");
    }

    #[test]
    fn multibyte_text_is_edited_by_chars() {
        let mut e = Editor::new("héllo");
        e.right();
        e.right();
        e.backspace();
        assert_eq!(e.text(), "hllo");
    }

    #[test]
    fn search_wraps_and_folds_case() {
        let mut e = Editor::new("one Two\nthree two");
        assert!(e.find_next("two", false));
        assert_eq!((e.row, e.col), (0, 4));
        assert!(e.find_next("two", false));
        assert_eq!((e.row, e.col), (1, 6));
        assert!(e.find_next("two", false));
        assert_eq!((e.row, e.col), (0, 4));
        assert!(!e.find_next("absent", false));
        assert!(!e.find_next("", false));
    }

    #[test]
    fn scroll_follows_cursor_with_wrap() {
        let text = (0..50)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut e = Editor::new(&text);
        e.down(30);
        e.scroll_to_cursor(10, 20, true);
        assert_eq!(e.scroll, 21);
        e.up(29);
        e.scroll_to_cursor(10, 20, true);
        assert_eq!(e.scroll, 1);
        let mut long = Editor::new(&"x".repeat(100));
        long.end();
        long.scroll_to_cursor(2, 10, true);
        assert_eq!(long.scroll, 0, "one logical line never scrolls past itself");
        assert_eq!(wrapped_rows(0, 10), 1);
        assert_eq!(wrapped_rows(21, 10), 3);
    }
}

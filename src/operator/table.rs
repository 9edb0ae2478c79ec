//! Plain text tables for the operator's commands: columns padded to their widest cell.

/// `headers` and `rows` as aligned columns, two spaces apart, the last column unpadded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            } else {
                text.push_str(cell);
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_under_their_headers() {
        let text = super::render(
            &["A", "LONGER", "LAST"],
            &[
                vec!["wide cell".into(), "x".into(), "end".into()],
                vec!["y".into(), "zz".into(), "".into()],
            ],
        );
        assert_eq!(
            text,
            "A          LONGER  LAST\nwide cell  x       end\ny          zz\n"
        );
    }
}

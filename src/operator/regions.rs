//! One operator's command over several Regions at once: which Regions (`--regions r1,r2`, or
//! `all`: every Region enabled for the account), the command run in each concurrently, and its
//! rows and lines marked with their Region.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::{aws_error, OperatorError};
use crate::aws::operator::OperatorAws;

/// The Regions `--regions` names: `all`, or a list such as `us-east-1,eu-west-1`.
pub async fn resolve(
    spec: &[String],
    base_region: Option<String>,
) -> Result<Vec<String>, OperatorError> {
    let names: Vec<String> = spec
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    if names.iter().any(|r| r == "all") {
        if names.len() > 1 {
            return Err(OperatorError::argument(
                "--regions",
                &names.join(","),
                "all stands alone",
            ));
        }
        let regions = OperatorAws::in_region(base_region)
            .await
            .enabled_regions()
            .await
            .map_err(aws_error("listing the account's enabled Regions"))?;
        return Ok(regions);
    }
    if names.is_empty() {
        return Err(OperatorError::argument(
            "--regions",
            "",
            "name Regions (us-east-1,eu-west-1) or all",
        ));
    }
    let mut unique = Vec::new();
    for name in names {
        let well_formed = name.len() <= 32
            && name.split('-').count() >= 3
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.chars().last().is_some_and(|c| c.is_ascii_digit());
        if !well_formed {
            return Err(OperatorError::argument(
                "--regions",
                &name,
                "not a Region name (as us-east-1)",
            ));
        }
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok(unique)
}

/// Runs `command` in every Region at once (with the standard environment's configuration in
/// that Region); the answers in the Regions' order.
pub async fn each<T, F, Fut>(
    regions: &[String],
    command: F,
) -> Vec<(String, Result<T, OperatorError>)>
where
    F: Fn(aws_config::SdkConfig, String) -> Fut,
    Fut: Future<Output = Result<T, OperatorError>>,
{
    let runs = regions.iter().map(|region| {
        let command = &command;
        async move {
            let config = OperatorAws::config_in(Some(region.clone())).await;
            (region.clone(), command(config, region.clone()).await)
        }
    });
    futures_util::future::join_all(runs).await
}

/// `rows` with the Region as their first cell.
pub fn marked(region: &str, rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|row| std::iter::once(region.to_owned()).chain(row).collect())
        .collect()
}

/// A writer that puts the Region in front of every line, for output written as it happens
/// (`watch`, a live drill) by several Regions at once into one stream.
pub struct Marked<W: Write> {
    region: String,
    pending: Vec<u8>,
    out: Arc<Mutex<W>>,
}

impl<W: Write> Marked<W> {
    pub fn new(region: &str, out: Arc<Mutex<W>>) -> Self {
        Self {
            region: region.to_owned(),
            pending: Vec::new(),
            out,
        }
    }
}

impl<W: Write> Write for Marked<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let mut out = self
                .out
                .lock()
                .map_err(|_| std::io::Error::other("output lock poisoned"))?;
            write!(out, "{:<15} ", self.region)?;
            out.write_all(&line)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.lock() {
            Ok(mut out) => out.flush(),
            Err(_) => Err(std::io::Error::other("output lock poisoned")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_regions_are_checked_and_deduplicated() {
        let spec = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            resolve(&spec("us-east-1, eu-west-1,us-east-1"), None)
                .await
                .unwrap(),
            vec!["us-east-1", "eu-west-1"]
        );
        for bad in [
            "",
            "useast1",
            "us-east-1,Europe",
            "all,us-east-1",
            "us-east-x",
        ] {
            let err = resolve(&spec(bad), None).await.unwrap_err().to_string();
            assert!(err.starts_with("--regions"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_line_carries_its_region() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut east = Marked::new("us-east-1", out.clone());
        let mut west = Marked::new("us-west-2", out.clone());
        write!(east, "one\ntw").unwrap();
        writeln!(west, "three").unwrap();
        writeln!(east, "o").unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "us-east-1       one\nus-west-2       three\nus-east-1       two\n"
        );
    }
}

//! The command line, parsed by hand (four subcommands, a handful of options).

use std::fmt;
use std::path::PathBuf;

pub const USAGE: &str = "usage:
  flexserve keygen -o DEVICE
  flexserve seal --model M.gguf --to DEVICE.pub [--to DEVICE2.pub ...] -o M.fsm
                 [--model-id HEX64] [--version N] [--max-chunk BYTES]
  flexserve inspect M.fsm
  flexserve verify M.fsm --key DEVICE.key [--model M.gguf]
  flexserve attest-verify REPORT --device DEVICE.attest.pub --nonce HEX64 [--package M.fsm]";

/// Default chunk bound: a few MiB keeps a layer of a small model in one chunk.
pub const DEFAULT_MAX_CHUNK: u32 = 4 << 20;

#[derive(Debug, PartialEq)]
pub enum Command {
    Keygen {
        out: PathBuf,
    },
    Seal {
        model: PathBuf,
        to: Vec<PathBuf>,
        out: PathBuf,
        model_id: Option<[u8; 32]>,
        version: u64,
        max_chunk: u32,
    },
    Inspect {
        package: PathBuf,
    },
    Verify {
        package: PathBuf,
        key: PathBuf,
        model: Option<PathBuf>,
    },
    /// Checks an attestation report (`Attest`'s output) against the device's attestation key
    /// and the nonce the verifier sent; with `package`, that it names that package.
    AttestVerify {
        report: PathBuf,
        device: PathBuf,
        nonce: [u8; 32],
        package: Option<PathBuf>,
    },
}

#[derive(Debug, PartialEq)]
pub enum ArgError {
    NoCommand,
    UnknownCommand(String),
    UnknownOption(String),
    MissingValue(&'static str),
    Missing(&'static str),
    BadNumber(&'static str, String),
    BadModelId(String),
    BadNonce(String),
    Unexpected(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NoCommand => write!(f, "no command given"),
            ArgError::UnknownCommand(c) => write!(f, "unknown command `{c}`"),
            ArgError::UnknownOption(o) => write!(f, "unknown option `{o}`"),
            ArgError::MissingValue(o) => write!(f, "option `{o}` needs a value"),
            ArgError::Missing(o) => write!(f, "`{o}` is required"),
            ArgError::BadNumber(o, v) => write!(f, "`{o}`: `{v}` is not a valid number"),
            ArgError::BadModelId(v) => {
                write!(f, "`--model-id`: `{v}` is not 64 hex digits (32 bytes)")
            }
            ArgError::BadNonce(v) => write!(f, "`--nonce`: `{v}` is not 64 hex digits (32 bytes)"),
            ArgError::Unexpected(a) => write!(f, "unexpected argument `{a}`"),
        }
    }
}

struct Opts<'a> {
    rest: std::slice::Iter<'a, String>,
}

impl<'a> Opts<'a> {
    fn value(&mut self, name: &'static str) -> Result<&'a String, ArgError> {
        self.rest.next().ok_or(ArgError::MissingValue(name))
    }
}

pub fn parse(argv: &[String]) -> Result<Command, ArgError> {
    let (cmd, rest) = argv.split_first().ok_or(ArgError::NoCommand)?;
    let mut o = Opts { rest: rest.iter() };
    let mut out = None;
    let mut model = None;
    let mut to = Vec::new();
    let mut key = None;
    let mut model_id = None;
    let mut version = 1u64;
    let mut max_chunk = DEFAULT_MAX_CHUNK;
    let mut positional = None;
    let mut device = None;
    let mut nonce = None;
    let mut package = None;
    while let Some(a) = o.rest.next() {
        match (cmd.as_str(), a.as_str()) {
            ("keygen" | "seal", "-o" | "--out") => out = Some(PathBuf::from(o.value("-o")?)),
            ("seal" | "verify", "--model") => model = Some(PathBuf::from(o.value("--model")?)),
            ("seal", "--to") => to.push(PathBuf::from(o.value("--to")?)),
            ("seal", "--version") => {
                let v = o.value("--version")?;
                version = v
                    .parse()
                    .map_err(|_| ArgError::BadNumber("--version", v.clone()))?;
            }
            ("seal", "--max-chunk") => {
                let v = o.value("--max-chunk")?;
                max_chunk = v
                    .parse()
                    .map_err(|_| ArgError::BadNumber("--max-chunk", v.clone()))?;
            }
            ("seal", "--model-id") => {
                let v = o.value("--model-id")?;
                model_id =
                    Some(crate::keys::from_hex(v).ok_or_else(|| ArgError::BadModelId(v.clone()))?);
            }
            ("verify", "--key") => key = Some(PathBuf::from(o.value("--key")?)),
            ("attest-verify", "--device") => device = Some(PathBuf::from(o.value("--device")?)),
            ("attest-verify", "--package") => package = Some(PathBuf::from(o.value("--package")?)),
            ("attest-verify", "--nonce") => {
                let v = o.value("--nonce")?;
                nonce =
                    Some(crate::keys::from_hex(v).ok_or_else(|| ArgError::BadNonce(v.clone()))?);
            }
            (_, s) if s.starts_with('-') && s.len() > 1 => {
                return Err(ArgError::UnknownOption(s.into()));
            }
            ("inspect" | "verify" | "attest-verify", _) if positional.is_none() => {
                positional = Some(PathBuf::from(a))
            }
            _ => return Err(ArgError::Unexpected(a.clone())),
        }
    }
    Ok(match cmd.as_str() {
        "keygen" => Command::Keygen {
            out: out.ok_or(ArgError::Missing("-o DEVICE"))?,
        },
        "seal" => {
            if to.is_empty() {
                return Err(ArgError::Missing("--to DEVICE.pub"));
            }
            Command::Seal {
                model: model.ok_or(ArgError::Missing("--model M.gguf"))?,
                to,
                out: out.ok_or(ArgError::Missing("-o M.fsm"))?,
                model_id,
                version,
                max_chunk,
            }
        }
        "inspect" => Command::Inspect {
            package: positional.ok_or(ArgError::Missing("M.fsm"))?,
        },
        "verify" => Command::Verify {
            package: positional.ok_or(ArgError::Missing("M.fsm"))?,
            key: key.ok_or(ArgError::Missing("--key DEVICE.key"))?,
            model,
        },
        "attest-verify" => Command::AttestVerify {
            report: positional.ok_or(ArgError::Missing("REPORT"))?,
            device: device.ok_or(ArgError::Missing("--device DEVICE.attest.pub"))?,
            nonce: nonce.ok_or(ArgError::Missing("--nonce HEX64"))?,
            package,
        },
        c => return Err(ArgError::UnknownCommand(c.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ArgError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(
            p("seal --model m.gguf --to a.pub --to b.pub -o m.fsm --version 3").unwrap(),
            Command::Seal {
                model: "m.gguf".into(),
                to: vec!["a.pub".into(), "b.pub".into()],
                out: "m.fsm".into(),
                model_id: None,
                version: 3,
                max_chunk: DEFAULT_MAX_CHUNK,
            }
        );
        assert_eq!(
            p("verify m.fsm --key d.key").unwrap(),
            Command::Verify {
                package: "m.fsm".into(),
                key: "d.key".into(),
                model: None
            }
        );
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert_eq!(p(""), Err(ArgError::NoCommand));
        assert_eq!(p("frob"), Err(ArgError::UnknownCommand("frob".into())));
        assert_eq!(
            p("seal --model m -o x"),
            Err(ArgError::Missing("--to DEVICE.pub"))
        );
        assert_eq!(p("seal --to"), Err(ArgError::MissingValue("--to")));
        assert_eq!(p("inspect a b"), Err(ArgError::Unexpected("b".into())));
        assert_eq!(
            p("inspect --key k a"),
            Err(ArgError::UnknownOption("--key".into()))
        );
        assert_eq!(
            p("seal --version x"),
            Err(ArgError::BadNumber("--version", "x".into()))
        );
        assert_eq!(
            p("seal --model-id 12"),
            Err(ArgError::BadModelId("12".into()))
        );
    }
}

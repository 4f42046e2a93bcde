//! Parsing of QEMU's qtest line protocol. QEMU asserts on malformed input;
//! we answer `FAIL ...` instead, so a broken client can't crash us.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Out { width: u8, port: u16, value: u32 },
    In { width: u8, port: u16 },
    Write { width: u8, addr: u64, value: u64 },
    Read { width: u8, addr: u64 },
    /// `read ADDR LEN` -> hex.
    MemRead { addr: u64, len: u64 },
    /// `write ADDR LEN 0xHEX` (missing bytes are zero, as QEMU does).
    MemWrite { addr: u64, len: u64, hex: String },
    MemSet { addr: u64, len: u64, pattern: u8 },
    B64Read { addr: u64, len: u64 },
    B64Write { addr: u64, len: u64, data: String },
    IrqInterceptIn { path: String },
    IrqInterceptOut { path: String },
    Endianness,
    ClockStep { ns: Option<i64> },
    ClockSet { ns: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// QEMU's qemu_strtoul with base 0: 0x.. hex, 0.. octal, else decimal.
fn parse_u64(word: Option<&&str>, what: &str) -> Result<u64, ParseError> {
    let w = word.ok_or_else(|| ParseError(format!("missing {what}")))?;
    let (digits, radix) = if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        (h, 16)
    } else if w.len() > 1 && w.starts_with('0') {
        (&w[1..], 8)
    } else {
        (*w, 10)
    };
    u64::from_str_radix(digits, radix).map_err(|_| ParseError(format!("invalid {what} '{w}'")))
}

fn parse_i64(word: Option<&&str>, what: &str) -> Result<i64, ParseError> {
    let w = word.ok_or_else(|| ParseError(format!("missing {what}")))?;
    if let Some(rest) = w.strip_prefix('-') {
        let v = parse_u64(Some(&rest), what)?;
        i64::try_from(v).map(|v| -v).map_err(|_| ParseError(format!("invalid {what} '{w}'")))
    } else {
        let v = parse_u64(Some(w), what)?;
        i64::try_from(v).map_err(|_| ParseError(format!("invalid {what} '{w}'")))
    }
}

fn port(word: Option<&&str>) -> Result<u16, ParseError> {
    let v = parse_u64(word, "port")?;
    u16::try_from(v).map_err(|_| ParseError(format!("port {v:#x} is above 0xffff")))
}

fn word_width(c: char) -> Option<u8> {
    match c {
        'b' => Some(1),
        'w' => Some(2),
        'l' => Some(4),
        'q' => Some(8),
        _ => None,
    }
}

/// Parse one line (without its newline). Words are separated by single
/// spaces as in QEMU (`g_strsplit(cmd, " ", 0)`).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = line.split(' ').collect();
    let name = words[0];
    let w = |i: usize| words.get(i);
    let unknown = || ParseError(format!("Unknown command '{name}'"));
    let cmd = match name {
        "outb" | "outw" | "outl" => {
            let width = word_width(name.chars().nth(3).unwrap_or('?')).ok_or_else(unknown)?;
            let value = parse_u64(w(2), "value")?;
            Command::Out { width, port: port(w(1))?, value: value as u32 }
        }
        "inb" | "inw" | "inl" => {
            let width = word_width(name.chars().nth(2).unwrap_or('?')).ok_or_else(unknown)?;
            Command::In { width, port: port(w(1))? }
        }
        "writeb" | "writew" | "writel" | "writeq" => {
            let width = word_width(name.chars().nth(5).unwrap_or('?')).ok_or_else(unknown)?;
            Command::Write { width, addr: parse_u64(w(1), "address")?, value: parse_u64(w(2), "value")? }
        }
        "readb" | "readw" | "readl" | "readq" => {
            let width = word_width(name.chars().nth(4).unwrap_or('?')).ok_or_else(unknown)?;
            Command::Read { width, addr: parse_u64(w(1), "address")? }
        }
        "read" => {
            let len = parse_u64(w(2), "length")?;
            if len == 0 {
                return Err(ParseError("length must not be 0".into()));
            }
            Command::MemRead { addr: parse_u64(w(1), "address")?, len }
        }
        "write" => {
            let hex = w(3).ok_or_else(|| ParseError("missing data".into()))?;
            Command::MemWrite { addr: parse_u64(w(1), "address")?, len: parse_u64(w(2), "length")?, hex: hex.to_string() }
        }
        "memset" => Command::MemSet {
            addr: parse_u64(w(1), "address")?,
            len: parse_u64(w(2), "length")?,
            pattern: parse_u64(w(3), "pattern")? as u8,
        },
        "b64read" => Command::B64Read { addr: parse_u64(w(1), "address")?, len: parse_u64(w(2), "length")? },
        "b64write" => {
            let data = w(3).ok_or_else(|| ParseError("missing data".into()))?;
            Command::B64Write { addr: parse_u64(w(1), "address")?, len: parse_u64(w(2), "length")?, data: data.to_string() }
        }
        "irq_intercept_in" | "irq_intercept_out" => {
            let path = w(1).ok_or_else(|| ParseError("missing QOM path".into()))?.to_string();
            if name == "irq_intercept_in" {
                Command::IrqInterceptIn { path }
            } else {
                Command::IrqInterceptOut { path }
            }
        }
        "endianness" => Command::Endianness,
        "clock_step" => Command::ClockStep { ns: match w(1) { Some(_) => Some(parse_i64(w(1), "nanoseconds")?), None => None } },
        "clock_set" => Command::ClockSet { ns: parse_i64(w(1), "nanoseconds")? },
        _ => return Err(unknown()),
    };
    Ok(cmd)
}

/// QEMU's hex decoding for `write`: two digits per byte after "0x", bytes
/// past the supplied digits are zero, invalid digits count as -1 (0xff
/// nibble pattern in QEMU); we treat them as 0.
pub fn decode_write_hex(hex: &str, len: usize) -> Vec<u8> {
    let digits = hex.as_bytes();
    let nib = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    (0..len)
        .map(|i| {
            let at = i * 2 + 2;
            if at + 2 <= digits.len() {
                (nib(digits[at]) << 4) | nib(digits[at + 1])
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands_libqtest_sends() {
        assert_eq!(parse("outb 0x1f7 0xec"), Ok(Command::Out { width: 1, port: 0x1f7, value: 0xec }));
        assert_eq!(parse("inw 0x1f0"), Ok(Command::In { width: 2, port: 0x1f0 }));
        assert_eq!(parse("writel 0x10000 0x20000"), Ok(Command::Write { width: 4, addr: 0x10000, value: 0x20000 }));
        assert_eq!(parse("readq 0x10"), Ok(Command::Read { width: 8, addr: 0x10 }));
        assert_eq!(parse("read 0x20000 512"), Ok(Command::MemRead { addr: 0x20000, len: 512 }));
        assert_eq!(parse("memset 0x1000 16 0xcc"), Ok(Command::MemSet { addr: 0x1000, len: 16, pattern: 0xcc }));
        assert_eq!(parse("irq_intercept_in ioapic"), Ok(Command::IrqInterceptIn { path: "ioapic".into() }));
        assert_eq!(parse("clock_step"), Ok(Command::ClockStep { ns: None }));
        assert_eq!(parse("outb 010 8"), Ok(Command::Out { width: 1, port: 8, value: 8 }));
    }

    #[test]
    fn malformed_lines_are_errors_not_crashes() {
        assert_eq!(parse("frob 1").unwrap_err().0, "Unknown command 'frob'");
        assert!(parse("outb 0x10000 1").is_err());
        assert!(parse("outb").is_err());
        assert!(parse("inb 0xzz").is_err());
        assert!(parse("read 0 0").is_err());
        assert!(parse("").is_err());
        assert_eq!(parse("clock_set -5"), Ok(Command::ClockSet { ns: -5 }));
        assert!(parse("clock_set 0xffffffffffffffff").is_err());
    }

    #[test]
    fn write_hex_pads_with_zeroes() {
        assert_eq!(decode_write_hex("0x0102", 4), vec![1, 2, 0, 0]);
        assert_eq!(decode_write_hex("0xabc", 2), vec![0xab, 0]);
    }
}

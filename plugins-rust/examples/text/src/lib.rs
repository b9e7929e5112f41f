//! The `text` example plugin: echo, reverse, upper, wordcount, fnv1a64 and
//! lines. Its results are byte for byte those of the C and Go versions
//! (`fixtures/vectors/text.json`).

use std::io::{BufWriter, Read, Write};

use pabi_pdk::{Error, Input, Output};

pabi_pdk::metadata!("pabi.json");
pabi_pdk::export! {
    echo => echo,
    reverse => reverse,
    upper => upper,
    wordcount => wordcount,
    fnv1a64 => fnv1a64,
}
pabi_pdk::export_stream!(lines => lines);

fn echo(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(input.to_vec())
}

fn reverse(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(input.iter().rev().copied().collect())
}

fn upper(input: &[u8]) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(input).map_err(|_| Error::invalid_input("input is not valid UTF-8"))?;
    Ok(text.to_ascii_uppercase().into_bytes())
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn wordcount(input: &[u8]) -> Result<Vec<u8>, Error> {
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let mut words = 0;
    let mut in_word = false;
    for &b in input {
        if is_space(b) {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    Ok(format!("{{\"bytes\":{},\"words\":{words},\"lines\":{lines}}}", input.len()).into_bytes())
}

fn fnv1a64(input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("{hash:016x}").into_bytes())
}

/// Numbers lines as `N\tLINE\n`, reading the input 4 KiB at a time and
/// writing as it goes, so neither the input nor a line is held whole.
fn lines(input: &mut Input, output: &mut Output) -> Result<(), Error> {
    let mut out = BufWriter::with_capacity(64 * 1024, output);
    let mut chunk = [0u8; 4096];
    let mut number: u64 = 0;
    let mut at_line_start = true;
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            if at_line_start {
                number += 1;
                write!(out, "{number}\t")?;
                at_line_start = false;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    out.write_all(&rest[..=end])?;
                    rest = &rest[end + 1..];
                    at_line_start = true;
                }
                None => {
                    out.write_all(rest)?;
                    rest = &[];
                }
            }
        }
    }
    if !at_line_start {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

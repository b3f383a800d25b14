//! The method help table's shape: each method's arguments (name, type, default), result and an
//! example, from which `help`, the usage line `noded rpc` prints on a params error, and the
//! server's argument-count check (`super::gate`) are all derived.
//!
//! Owns the rendering of help text only; the entries live next to the methods they describe
//! (server.rs, mempool.rs, mining.rs, wallet.rs) and `server::all_methods` joins them.

/// One positional argument of a method.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub name: &'static str,
    /// The JSON type(s) accepted, e.g. "string (hex)", "integer or bool".
    pub ty: &'static str,
    /// `None`: required. `Some("")`: optional without a default. `Some(d)`: optional, default d.
    pub default: Option<&'static str>,
    pub about: &'static str,
}

/// A required argument.
pub const fn req(name: &'static str, ty: &'static str, about: &'static str) -> Arg {
    Arg {
        name,
        ty,
        default: None,
        about,
    }
}

/// An optional argument; `default` is "" when there is none.
pub const fn opt(
    name: &'static str,
    ty: &'static str,
    default: &'static str,
    about: &'static str,
) -> Arg {
    Arg {
        name,
        ty,
        default: Some(default),
        about,
    }
}

/// A method's help entry.
#[derive(Clone, Copy, Debug)]
pub struct MethodHelp {
    pub name: &'static str,
    pub args: &'static [Arg],
    /// One line: what the method does.
    pub about: &'static str,
    /// What it answers with.
    pub result: &'static str,
    /// The arguments of a working call, as typed after `noded rpc <name>`.
    pub example: &'static str,
}

impl MethodHelp {
    /// Most positional arguments the method takes.
    pub fn max_args(&self) -> usize {
        self.args.len()
    }

    /// The one-line usage: `getblock blockhash [verbosity=1]`.
    pub fn usage(&self) -> String {
        let mut line = self.name.to_string();
        for a in self.args {
            line.push(' ');
            match a.default {
                None => line.push_str(a.name),
                Some("") => line.push_str(&format!("[{}]", a.name)),
                Some(d) => line.push_str(&format!("[{}={d}]", a.name)),
            }
        }
        line
    }

    /// The line `help` lists for the method.
    pub fn summary(&self) -> String {
        format!("{} — {}", self.usage(), self.about)
    }

    /// The message for a call with `given` positional arguments (a count, or "more than N"),
    /// more than the method takes.
    pub fn too_many_args(&self, given: impl std::fmt::Display) -> String {
        match self.max_args() {
            0 => format!("{} takes no arguments ({given} given)", self.name),
            1 => format!("{} takes at most 1 argument ({given} given)", self.name),
            n => format!("{} takes at most {n} arguments ({given} given)", self.name),
        }
    }

    /// `help <method>`: usage, description, arguments, result and an example.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n{}\n", self.usage(), self.about);
        if !self.args.is_empty() {
            out.push_str("\nArguments:\n");
            for (i, a) in self.args.iter().enumerate() {
                let need = match a.default {
                    None => "required".to_string(),
                    Some("") => "optional".to_string(),
                    Some(d) => format!("optional, default={d}"),
                };
                out.push_str(&format!(
                    "{}. {} ({}, {need}) {}\n",
                    i + 1,
                    a.name,
                    a.ty,
                    a.about
                ));
            }
        }
        out.push_str(&format!("\nResult:\n{}\n", self.result));
        let call = if self.example.is_empty() {
            self.name.to_string()
        } else {
            format!("{} {}", self.name, self.example)
        };
        out.push_str(&format!("\nExample:\nnoded rpc {call}"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GETBLOCK: MethodHelp = MethodHelp {
        name: "getblock",
        args: &[
            req("blockhash", "string (hex)", "The block."),
            opt("verbosity", "integer or bool", "1", "How much."),
            opt("extra", "string", "", "Nothing."),
        ],
        about: "A block.",
        result: "JSON",
        example: "00ff 2",
    };

    #[test]
    fn every_entry_has_arguments_a_result_and_an_example() {
        let all: Vec<_> = crate::rpc::server::all_methods().collect();
        for m in &all {
            let text = m.text();
            assert!(!m.result.is_empty(), "{}: no result", m.name);
            assert!(
                text.contains(&format!("Example:\nnoded rpc {}", m.name)),
                "{}: {text}",
                m.name
            );
            assert_eq!(
                all.iter().filter(|o| o.name == m.name).count(),
                1,
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn usage_and_text_show_every_argument() {
        assert_eq!(GETBLOCK.usage(), "getblock blockhash [verbosity=1] [extra]");
        let text = GETBLOCK.text();
        assert!(text.contains("2. verbosity (integer or bool, optional, default=1) How much."));
        assert!(text.ends_with("noded rpc getblock 00ff 2"));
        assert_eq!(
            GETBLOCK.too_many_args(4),
            "getblock takes at most 3 arguments (4 given)"
        );
    }
}

//! Identify a license by its text against the SPDX license list.
//!
//! Uses the `spdx` crate's `detection` feature: the SPDX license-list texts
//! (embedded in the crate, so this works offline) normalized per the SPDX
//! matching guidelines and compared by n-gram similarity (the askalono
//! method). No hand-written template matcher: this one is well kept and
//! carries the whole list.
//!
//! What this module adds on top:
//! * a deterministic choice: every candidate is scored and ties are broken by
//!   id (the crate's own `analyze` sorts unstably over a HashMap);
//! * deprecated ids are never returned (`bzip2-1.0.5` has the same text as
//!   `bzip2-1.0.6`; `GPL-2.0` as `GPL-2.0-only`);
//! * exceptions: the SPDX cache holds license texts only, so exception
//!   paragraphs are recognized by their distinctive operative sentence from
//!   the SPDX exception-list texts ([`exceptions`]);
//! * a per-process memo keyed by the sha256 of the text: the same license
//!   paragraphs recur across packages' copyright files (the examples ask
//!   1,184 times for 245 distinct texts), and scoring one text against the
//!   whole list is the most expensive step of a cold build. The result is a
//!   pure function of the text, so the memo cannot change any output.

use sha2::{Digest as _, Sha256};
use spdx::detection::{Store, TextData};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// The SPDX store, loaded once (about 0.3 s).
static STORE: LazyLock<Option<Store>> = LazyLock::new(|| Store::load_inline().ok());

/// A license identified from its text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextMatch {
    /// SPDX license id (never deprecated).
    pub id: String,
    /// Similarity 0..1 (Dice coefficient of word bigrams).
    pub score: f32,
    /// The runner-up id and its score, to show how clear the match was.
    pub runner_up: Option<(String, f32)>,
}

/// Score at or above which a text match is trusted without review.
pub const STRONG: f32 = 0.90;
/// Score at or above which a text match is used at all (flagged as weak
/// below [`STRONG`]).
pub const USABLE: f32 = 0.80;

/// Scores this close to the best are a tie decided by convention.
const NEAR_TIE: f32 = 0.02;

/// Margin within which a base id beats its suffixed variant.
const BASE_MARGIN: f32 = 0.04;

fn n_score<'a>(scored: &'a [(f32, &str)], name: &str) -> &'a f32 {
    scored
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(s, _)| s)
        .unwrap_or(&0.0)
}

fn usable_id(name: &str) -> bool {
    spdx::license_id(name).is_some_and(|l| !l.is_deprecated())
}

/// Results of [`identify`] so far, by the sha256 of the text (lookups only:
/// never iterated, so its order cannot reach an output).
static MEMO: LazyLock<Mutex<HashMap<[u8; 32], Option<TextMatch>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The best SPDX license for `text`, if any scores at least [`USABLE`].
/// Texts shorter than 12 words are not matched (names, pointers).
pub fn identify(text: &str) -> Option<TextMatch> {
    if text.split_whitespace().count() < 12 {
        return None;
    }
    let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let memo = |m: &HashMap<_, Option<TextMatch>>| m.get(&key).cloned();
    if let Some(hit) = memo(&MEMO.lock().unwrap_or_else(|e| e.into_inner())) {
        return hit;
    }
    // Two threads may score the same text at once; both get the same answer.
    let found = best_match(text);
    MEMO.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, found.clone());
    found
}

/// [`identify`] without the memo: score `text` against every usable id.
fn best_match(text: &str) -> Option<TextMatch> {
    let store = STORE.as_ref()?;
    let data = TextData::new(text);
    let mut scored: Vec<(f32, &str)> = store
        .iter()
        .filter(|(name, _)| usable_id(name))
        .map(|(name, entry)| {
            let mut best = entry.original.match_score(&data);
            for alt in &entry.alternates {
                best = best.max(alt.match_score(&data));
            }
            (best, name.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let top = scored.first()?.0;
    // Near-ties (a few words apart, e.g. `BSD-2-Clause` and its rarely used
    // `-Views` or `-pos-unchanged` variants): the conventional id wins, i.e.
    // an OSI-approved one, then the shortest.
    let (score, id) = *scored
        .iter()
        .take_while(|(s, _)| top - *s <= NEAR_TIE)
        .min_by_key(|(_, n)| {
            let osi = spdx::license_id(n).is_some_and(|l| l.is_osi_approved());
            (!osi, n.len(), *n)
        })?;
    // A rarely used variant named after its base (`X11-swapped`,
    // `BSD-3-Clause-HP`) only wins when clearly better than the base.
    let (score, id) = match id.rsplit_once('-').and_then(|(b, _)| {
        scored
            .iter()
            .find(|(_, n)| *n == b && score - *n_score(&scored, n) <= BASE_MARGIN)
            .copied()
    }) {
        Some(base) if id.starts_with(&format!("{}-", base.1)) => base,
        _ => (score, id),
    };
    if score < USABLE {
        return None;
    }
    Some(TextMatch {
        id: id.to_string(),
        score,
        runner_up: scored
            .iter()
            .find(|(_, n)| *n != id)
            .map(|(s, n)| ((*n).to_string(), *s)),
    })
}

/// The score of the SPDX license `id` against `text` (best of its original
/// and alternate texts), if the id is in the store.
pub fn score_of(id: &str, text: &str) -> Option<f32> {
    let store = STORE.as_ref()?;
    let data = TextData::new(text);
    store.iter().find(|(n, _)| n.as_str() == id).map(|(_, e)| {
        e.alternates
            .iter()
            .map(|a| a.match_score(&data))
            .fold(e.original.match_score(&data), f32::max)
    })
}

/// SPDX exception id → its operative sentence (normalized as
/// [`crate::sbom::text::normalize`] does), from the SPDX exception-list texts.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "Bison-exception-2.2",
        "you may create a larger work that contains part or all of the bison parser skeleton",
    ),
    (
        "PCRE2-exception",
        "exemption for binary library-like packages",
    ),
    ("GCC-exception-3.1", "gcc runtime library exception"),
    (
        "Autoconf-exception-3.0",
        "the autoconf configure script generated by autoconf",
    ),
    (
        "Autoconf-exception-2.0",
        "as a special exception, the free software foundation gives unlimited permission to copy, distribute and modify the configure scripts",
    ),
    (
        "Libtool-exception",
        "if you distribute this file as part of a program or library that is built using gnu libtool",
    ),
    (
        "Classpath-exception-2.0",
        "linking this library statically or dynamically with other modules is making a combined work",
    ),
    (
        "LLVM-exception",
        "as an exception, if, as a result of your compiling your source code",
    ),
];

/// SPDX exceptions whose operative sentence is in `normalized` text.
pub fn exceptions(normalized: &str) -> Vec<&'static str> {
    EXCEPTIONS
        .iter()
        .filter(|(_, s)| normalized.contains(s))
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_sentences_are_normalized() {
        for (_, s) in EXCEPTIONS {
            assert_eq!(*s, crate::sbom::text::normalize(s));
        }
    }

    #[test]
    fn identifies_common_texts() {
        let bsd2 = "Redistribution and use in source and binary forms, with or without modification, are permitted provided that the following conditions are met:\n1. Redistributions of source code must retain the above copyright notice, this list of conditions and the following disclaimer.\n2. Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the following disclaimer in the documentation and/or other materials provided with the distribution.\nTHIS SOFTWARE IS PROVIDED BY THE AUTHOR ``AS IS'' AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.";
        let m = identify(bsd2).expect("match");
        assert_eq!(m.id, "BSD-2-Clause", "{m:?}");
        assert!(identify("GPL-2+").is_none());
    }

    #[test]
    fn memo_answers_as_the_scorer_does() {
        let mit = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated documentation files (the \"Software\"), to deal in the Software without restriction, including without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all copies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.";
        let first = identify(mit);
        let key: [u8; 32] = Sha256::digest(mit.as_bytes()).into();
        let held = MEMO.lock().unwrap().get(&key).cloned();
        assert_eq!(held, Some(first.clone()), "the answer is kept");
        assert_eq!(identify(mit), first, "a second ask gets the same answer");
        assert_eq!(best_match(mit), first, "the memo changes nothing");
        assert_eq!(first.expect("match").id, "MIT");
    }
}

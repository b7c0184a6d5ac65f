//! The license inventory as one self-contained HTML page for a legal
//! reviewer: summary counts, the review-flag legend, a table that sorts by
//! any column and filters by text, flag and confidence (inline CSS and
//! JavaScript, no external resource, works offline and without scripts as a
//! plain table), the evidence of every row in an expandable `<details>`, and
//! links to the verbatim copyright files under `attribution/`.

use super::license::ReviewFlag;
use super::report::Row;
use std::fmt::Write as _;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#eee;cursor:pointer;user-select:none;position:sticky;top:0}\
th.asc::after{content:' \\25B2'}th.desc::after{content:' \\25BC'}\
tr.flagged>td:first-child{border-left:5px solid #d98c00}\
tr.flagged{background:#fff6e0}.lic{font-family:monospace}\
.conf-high{color:#176117}.conf-medium{color:#8a6200}.conf-low{color:#b00020;font-weight:bold}\
.cards{display:flex;gap:1em;margin:1em 0}.card{border:1px solid #bbb;border-radius:6px;padding:.5em 1em}\
.card b{font-size:1.4em;display:block}.controls{margin:1em 0;display:flex;gap:1em;flex-wrap:wrap}\
details ul{margin:.3em 0;padding-left:1.2em}li.drop{color:#666}li.keep{color:#111}\
.flag{display:inline-block;background:#ffe1a8;border-radius:3px;padding:0 4px;margin:1px;font-size:.9em}\
table.legend{width:auto}";

const SCRIPT: &str = r#"(function(){
var t=document.getElementById('inv'),b=t.tBodies[0];
var rows=function(){return Array.prototype.slice.call(b.rows);};
function key(r,i){var c=r.cells[i];return (c.getAttribute('data-sort')||c.textContent).trim().toLowerCase();}
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){th.addEventListener('click',function(){
var asc=!th.classList.contains('asc');Array.prototype.forEach.call(t.tHead.rows[0].cells,function(h){h.classList.remove('asc','desc');});
th.classList.add(asc?'asc':'desc');rows().sort(function(x,y){var a=key(x,i),c=key(y,i);return (a<c?-1:a>c?1:0)*(asc?1:-1);}).forEach(function(r){b.appendChild(r);});});});
var q=document.getElementById('q'),fl=document.getElementById('flagged'),cf=document.getElementById('conf'),n=document.getElementById('shown');
function apply(){var s=q.value.toLowerCase(),k=0;rows().forEach(function(r){var ok=r.textContent.toLowerCase().indexOf(s)>=0&&(!fl.checked||r.classList.contains('flagged'))&&(!cf.value||r.getAttribute('data-conf')===cf.value);r.style.display=ok?'':'none';if(ok)k++;});n.textContent=k;}
[q,fl,cf].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});apply();})();"#;

fn summary(s: &mut String, rows: &[Row]) {
    let flagged = rows.iter().filter(|r| !r.flags.is_empty()).count();
    let count = |c: &str| rows.iter().filter(|r| r.confidence == c).count();
    let copyleft = rows.iter().filter(|r| r.copyleft).count();
    let noassert = rows.iter().filter(|r| r.license == "NOASSERTION").count();
    s.push_str("<div class=\"cards\">");
    for (label, n) in [
        ("packages", rows.len()),
        ("flagged for review", flagged),
        ("high confidence", count("high")),
        ("medium confidence", count("medium")),
        ("low confidence", count("low")),
        ("copyleft", copyleft),
        ("NOASSERTION", noassert),
    ] {
        let _ = write!(s, "<div class=\"card\"><b>{n}</b>{label}</div>");
    }
    s.push_str("</div>\n");
}

fn legend(s: &mut String) {
    s.push_str("<h2>Review flags</h2>\n<table class=\"legend\"><tr><th>Flag</th><th>What to look at</th></tr>\n");
    for (f, what) in ReviewFlag::LEGEND {
        let _ = writeln!(
            s,
            "<tr><td><span class=\"flag\">{}</span></td><td>{}</td></tr>",
            esc(f),
            esc(what)
        );
    }
    s.push_str("</table>\n");
}

fn row(s: &mut String, r: &Row) {
    let flags: String = r
        .flags
        .iter()
        .map(|f| format!("<span class=\"flag\">{}</span>", esc(f)))
        .collect();
    let mut ev = String::new();
    for st in r
        .stanzas
        .iter()
        .filter(|x| x.kept)
        .chain(r.stanzas.iter().filter(|x| !x.kept))
    {
        let _ = write!(
            ev,
            "<li class=\"{}\"><b>{}</b> {} <code>{}</code> → <code>{}</code>: {}{}</li>",
            if st.kept { "keep" } else { "drop" },
            if st.kept { "kept" } else { "dropped" },
            esc(&st.scope),
            esc(&st.label),
            esc(st.expression.as_deref().unwrap_or("-")),
            esc(&st.reason),
            if st.how.is_empty() {
                String::new()
            } else {
                format!("<br><i>identified:</i> {}", esc(&st.how.join("; ")))
            }
        );
    }
    for n in r.notes.iter().filter(|n| !n.starts_with("dropped ")) {
        let _ = write!(ev, "<li>{}</li>", esc(n));
    }
    let mut links = String::new();
    if let Some(a) = &r.attribution {
        let _ = write!(links, "<a href=\"{}\">copyright file</a> ", esc(a));
    }
    for c in &r.common_licenses {
        let name = c.rsplit('/').next().unwrap_or(c);
        let _ = write!(links, "<a href=\"{}\">{}</a> ", esc(c), esc(name));
    }
    if let Some(c) = &r.copyright_from {
        let _ = write!(links, "<br>copyright from {}", esc(c));
    }
    let rank = match r.confidence.as_str() {
        "low" => "0",
        "medium" => "1",
        _ => "2",
    };
    let _ = writeln!(
        s,
        "<tr class=\"{cls}\" data-conf=\"{conf}\"><td>{pkg}</td><td>{ver}</td><td>{src}</td><td class=\"lic\">{lic}</td><td class=\"conf-{conf}\" data-sort=\"{rank}\">{conf}</td><td>{cl}</td><td>{method}</td><td>{flags}</td><td>{links}</td><td><details><summary>{n} stanza(s)</summary><ul>{ev}</ul></details></td></tr>",
        cls = if r.flags.is_empty() { "" } else { "flagged" },
        conf = esc(&r.confidence),
        pkg = esc(&r.package),
        ver = esc(&r.version),
        src = esc(&r.source),
        lic = esc(&r.license),
        cl = if r.copyleft { "yes" } else { "no" },
        method = esc(&r.method),
        n = r.stanzas.len(),
    );
}

/// The HTML report.
pub fn html(title: &str, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>License inventory: {t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>License inventory: {t}</h1>\n<p>Declared licenses are SPDX expressions read from each package's copyright file; expand a row's evidence to see which stanzas were kept or dropped and why.</p>\n",
        t = esc(title)
    );
    summary(&mut s, rows);
    s.push_str("<div class=\"controls\"><label>Filter <input id=\"q\" type=\"search\" placeholder=\"package, license, flag…\"></label><label><input id=\"flagged\" type=\"checkbox\"> flagged only</label><label>Confidence <select id=\"conf\"><option value=\"\">any</option><option>high</option><option>medium</option><option>low</option></select></label><span><span id=\"shown\"></span> shown</span></div>\n");
    s.push_str("<table id=\"inv\">\n<thead><tr><th>Package</th><th>Version</th><th>Source</th><th>License</th><th>Confidence</th><th>Copyleft</th><th>Method</th><th>Review flags</th><th>Attribution</th><th>Evidence</th></tr></thead>\n<tbody>\n");
    for r in rows {
        row(&mut s, r);
    }
    s.push_str("</tbody>\n</table>\n");
    legend(&mut s);
    let _ = write!(s, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    s
}

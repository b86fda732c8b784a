//! The access log as CSV (RFC 4180), for a spreadsheet: one record per disclosure with the
//! same facts as the JSON, and the entry's canonical bytes and the checkpoint byte-exact, so
//! the file alone is enough to check each entry against the signed log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::access_log::{AccessLog, type_counts};
use crate::audit::leaf_hash;
use crate::records::dates::format_instant;

/// The access log's CSV columns.
pub const CSV_HEADER: [&str; 20] = [
    "date",
    "action",
    "recipient_kind",
    "client_id",
    "client_name",
    "organisation",
    "user",
    "resource_types",
    "resources",
    "purpose_of_use",
    "consents",
    "policies",
    "break_glass",
    "justification",
    "leaf_index",
    "leaf_hash",
    "entry",
    "tree_size",
    "checkpoint",
    "proof_url",
];

impl AccessLog {
    /// The page as CSV with a header record.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        csv_record(&mut out, &CSV_HEADER);
        let checkpoint = self.checkpoint();
        for d in self.entries() {
            let e = &d.entry;
            let r = self.recipient(e);
            let types = type_counts(&e.resources)
                .iter()
                .map(|(t, n)| format!("{t}:{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let fields = [
                format_instant(e.recorded_micros),
                e.action.as_str().to_string(),
                r.kind.to_string(),
                e.client_id.clone(),
                r.client_name.unwrap_or_default().to_string(),
                r.organisation.unwrap_or_default().to_string(),
                e.user.clone().unwrap_or_default(),
                types,
                e.resources.join(" "),
                e.purpose_of_use.clone(),
                e.consents.join(" "),
                e.policies.join(" "),
                e.break_glass.is_some().to_string(),
                e.break_glass.clone().unwrap_or_default(),
                d.row.seq.to_string(),
                STANDARD.encode(leaf_hash(d.row.body.as_bytes())),
                d.row.body.clone(),
                checkpoint.map(|c| c.size.to_string()).unwrap_or_default(),
                checkpoint.map(|c| c.note.clone()).unwrap_or_default(),
                self.proof_url(d.row.seq).unwrap_or_default(),
            ];
            csv_record(&mut out, &fields.each_ref().map(String::as_str));
        }
        out
    }
}

/// Appends one RFC 4180 record (CRLF-terminated). A field is quoted when it holds a comma,
/// a double quote, CR or LF, with quotes doubled. A field a spreadsheet would run as a
/// formula (leading `=`, `+`, `-`, `@`, TAB or CR) gets a leading `'` (OWASP's advice on
/// CSV injection); the `entry` and `checkpoint` fields never start that way, so they stay
/// byte-exact for verification.
pub fn csv_record(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guard = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quote = field.contains([',', '"', '\r', '\n']);
        if quote {
            out.push('"');
        }
        if guard {
            out.push('\'');
        }
        if quote {
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::access_log::tests::sample;

    fn record(fields: &[&str]) -> String {
        let mut out = String::new();
        csv_record(&mut out, fields);
        out
    }

    #[test]
    fn csv_quotes_as_rfc_4180_asks() {
        let cases: [(&[&str], &str); 7] = [
            (&["a", "b"], "a,b\r\n"),
            (&["", ""], ",\r\n"),
            (&["a,b"], "\"a,b\"\r\n"),
            (&["say \"hi\""], "\"say \"\"hi\"\"\"\r\n"),
            (&["two\nlines", "x"], "\"two\nlines\",x\r\n"),
            (&["cr\r"], "\"cr\r\"\r\n"),
            (&["{\"a\":1}"], "\"{\"\"a\"\":1}\"\r\n"),
        ];
        for (fields, want) in cases {
            assert_eq!(record(fields), want, "{fields:?}");
        }
    }

    #[test]
    fn csv_defuses_formulas() {
        assert_eq!(record(&["=1+1"]), "'=1+1\r\n");
        assert_eq!(record(&["@x", "+y", "-z"]), "'@x,'+y,'-z\r\n");
        assert_eq!(record(&["=a,b"]), "\"'=a,b\"\r\n");
        assert_eq!(record(&["a=b"]), "a=b\r\n");
    }

    /// Splits RFC 4180 text into records of fields (quotes undone), to read our own output.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        records
    }

    #[test]
    fn the_csv_keeps_entries_and_checkpoint_byte_exact() {
        let log = sample();
        let records = parse(&log.to_csv());
        assert_eq!(records.len(), 3, "a header and two entries");
        assert_eq!(records[0], CSV_HEADER);
        let column = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
        let json = log.to_json();
        for (record, shown) in records[1..]
            .iter()
            .zip(json["disclosures"].as_array().unwrap())
        {
            assert_eq!(record.len(), CSV_HEADER.len());
            assert_eq!(
                record[column("entry")],
                shown["inclusion"]["entry"].as_str().unwrap()
            );
            assert_eq!(
                record[column("checkpoint")],
                json["checkpoint"]["note"].as_str().unwrap()
            );
            assert_eq!(
                record[column("leaf_index")],
                shown["inclusion"]["leaf_index"].to_string()
            );
        }
        let operator = &records[1];
        assert_eq!(operator[column("recipient_kind")], "operator");
        // The justification would run as a formula: defused, and still readable.
        assert_eq!(operator[column("justification")], "'=cmd,\"x\"");
        let client = &records[2];
        assert_eq!(client[column("client_name")], "clinic, app");
        assert_eq!(client[column("resource_types")], "Observation:2");
        assert_eq!(
            client[column("proof_url")],
            "https://gw/api/v1/audit/proofs/inclusion?index=4&tree_size=5"
        );
    }
}

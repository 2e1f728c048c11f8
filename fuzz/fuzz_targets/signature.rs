//! Fuzzes the signature-file parsers, which read bytes before anything is verified (the
//! bundle) or right after (the statement): they must never panic, and a bundle or
//! statement they accept must survive ward's own writer unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_package::signature::bundle::Bundle;
use ward_package::signature::statement::Statement;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::parse(data) {
        let again = Bundle::parse(&b.to_json()).expect("ward's own bundle must parse");
        assert_eq!(again, b);
    }
    if let Ok(s) = Statement::parse(data) {
        // Re-encode the parsed resources in their original order and parse again.
        let mut resources = Vec::new();
        for (path, ranges) in &s.files {
            for r in ranges {
                let name = match s.hashing.granularity {
                    ward_package::signature::Granularity::Files => path.clone(),
                    ward_package::signature::Granularity::Shards(_) => {
                        format!("{path}:{}:{}", r.start, r.end)
                    }
                };
                resources.push((name, r.digest.clone()));
            }
        }
        let payload = Statement::encode(&s.model_name, s.hashing, &s.ignore_paths, &resources);
        let again = Statement::parse(&payload).expect("ward's own statement must parse");
        assert_eq!(again.files, s.files);
        assert_eq!(again.hashing, s.hashing);
    }
});

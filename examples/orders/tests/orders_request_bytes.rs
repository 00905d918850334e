//! The `orders_request` fuzz target's property, on stable and in every `cargo test`: each seed
//! of `fuzz/corpus/orders_request/` (`seed-*`: the committed ones, among them every input a
//! fuzzer run found and that was kept as a regression), sent as raw bytes into the service in-process, gets well-formed answers,
//! never a 500, one per request that reached the service (`orders::fuzzing`).

use std::path::Path;

use orders::fuzzing::Harness;

#[test]
fn every_seed_of_the_fuzz_corpus_gets_well_formed_answers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/orders_request");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the corpus lost its seeds: {seeds:?}");
    let harness = Harness::new().expect("harness");
    let mut answered = 0;
    for seed in &seeds {
        let input = std::fs::read(seed).expect("seed");
        let exchange = harness.exchange(&input);
        match exchange.check() {
            Ok(n) => answered += n,
            Err(why) => panic!(
                "{}: {why}\nsent: {:?}\ngot: {:?}",
                seed.display(),
                String::from_utf8_lossy(&input),
                String::from_utf8_lossy(&exchange.output)
            ),
        }
    }
    // Not vacuous: most seeds are requests the service answers.
    assert!(
        answered >= seeds.len(),
        "{answered} answers to {} seeds",
        seeds.len()
    );
}

#[test]
fn an_order_sent_as_bytes_is_created() {
    let harness = Harness::new().expect("harness");
    let body = r#"{"user_id":1,"item":"widget","quantity":2}"#;
    let input = format!(
        "POST /api/orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}GET /api/users/1 HTTP/1.1\r\nhost: x\r\n\r\n",
        body.len()
    );
    let exchange = harness.exchange(input.as_bytes());
    assert_eq!(
        exchange.check(),
        Ok(2),
        "{:?}",
        String::from_utf8_lossy(&exchange.output)
    );
    let text = String::from_utf8_lossy(&exchange.output);
    assert!(text.starts_with("HTTP/1.1 201 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 1, "{text}");
}

//! One AdmissionReview body answered N times in-process, over the snapshot
//! of `serve_snapshot`: for counting instructions per review with
//! `valgrind --tool=callgrind` (repeatable on a busy machine).
//!
//! `review_count ENDPOINT BODY N`

#![forbid(unsafe_code)]

use credgate::admission::{Admission, Endpoint};
use credgate::policy::Settings;

#[path = "../benches/support/mod.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, body, n] = args.as_slice() else {
        anyhow::bail!("usage: review_count mutate|validate BODY N");
    };
    let endpoint = match endpoint.as_str() {
        "mutate" => Endpoint::Mutate,
        _ => Endpoint::Validate,
    };
    let body = std::fs::read(body)?;
    let index = support::bench_snapshot();
    let admission = Admission::with_index(Settings::default(), index);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let n: usize = n.parse()?;
    let mut bytes = 0;
    for _ in 0..n {
        let answer = runtime.block_on(admission.review(endpoint, &body)).body;
        if n == 1 {
            std::io::Write::write_all(&mut std::io::stdout(), &answer)?;
            return Ok(());
        }
        bytes += answer.len();
    }
    println!("{bytes}");
    Ok(())
}

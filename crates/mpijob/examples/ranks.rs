//! A rank for the kit's tests (tests/jobs.rs): with `finish`, it finishes; with `panic R`,
//! rank R panics while the others wait for its message; with `exit R`, rank R exits 0
//! without finishing MPI.

use mpi::traits::*;

fn main() -> anyhow::Result<()> {
    let universe = mpijob::rank::start()?;
    let world = universe.world();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rank = world.rank();
    println!("rank {rank} of {}", world.size());
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["panic", r] if r.parse() == Ok(rank) => panic!("rank {rank} panics on purpose"),
        ["exit", r] if r.parse() == Ok(rank) => std::process::exit(0),
        ["panic", _] | ["exit", _] => {
            let (_, _): (u64, _) = world.process_at_rank((rank + 1) % world.size()).receive();
        }
        _ => {}
    }
    mpijob::rank::finish(universe);
    Ok(())
}

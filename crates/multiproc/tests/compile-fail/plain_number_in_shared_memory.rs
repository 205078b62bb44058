// A plain number that other processes may change cannot be shared: only atomics (or a
// Value, behind its lock).
use multiproc::shm::Shared;

fn main() {
    let _balance = Shared::<i64>::new();
}

// A std::sync::Mutex cannot be put in shared memory: it keeps its waiters in one process.
use multiproc::shm::Shared;

fn main() {
    let _counter = Shared::<std::sync::Mutex<u64>>::new();
}

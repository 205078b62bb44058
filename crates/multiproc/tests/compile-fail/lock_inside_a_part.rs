// While children hold the parts of an Array (lock=False), nobody takes its lock: not the
// parent, and not a child (whose `&mut` part would then alias the guard's values).
use multiproc::shm::Array;

fn main() -> anyhow::Result<()> {
    let mut array = Array::<f64>::new(8)?;
    array.fork_chunks(4, |_worker, part| {
        if let Ok(values) = array.lock() {
            part[0] = values[7];
        }
        0
    })
}

// A read view of an Array (a guard) and its parts handed to children cannot be held together.
use multiproc::shm::Array;

fn main() -> anyhow::Result<()> {
    let mut array = Array::<f64>::new(8)?;
    let values = array.lock()?;
    array.fork_chunks(4, |_worker, part| {
        part.fill(1.0);
        0
    })?;
    println!("{}", values[0]);
    Ok(())
}

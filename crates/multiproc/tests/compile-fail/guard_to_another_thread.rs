// A guard stays in the thread that took it: it is counted there, and a process holding one
// does not fork.
use multiproc::shm::Value;

fn main() -> anyhow::Result<()> {
    let count: &'static Value<u64> = Box::leak(Box::new(Value::new(0)?));
    let guard = count.lock()?;
    std::thread::spawn(move || drop(guard)).join().unwrap();
    Ok(())
}

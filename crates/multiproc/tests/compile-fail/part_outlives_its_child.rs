// A child's part cannot be kept beyond its work: after `work`, the child exits, and only
// then may the parent reach the values again.
use std::cell::RefCell;

use multiproc::shm::Array;

fn main() -> anyhow::Result<()> {
    let mut array = Array::<f64>::new(8)?;
    let kept = RefCell::new(Vec::new());
    array.fork_chunks(4, |_worker, part| {
        kept.borrow_mut().push(part);
        0
    })
}

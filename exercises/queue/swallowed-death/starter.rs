//! Exercise queue/swallowed-death: three producers put 100 numbers each into a queue, and
//! the parent adds up all 300. The check kills producer 1 half-way: the parent then prints
//! a total of fewer numbers, and exits 0 as if all were well. Make it fail, naming the
//! producer that died.

use multiproc::proc::Children;
use multiproc::queue::Queue;
use plumbing::{Args, Exercise, fault};

const EXERCISE: Exercise = Exercise {
    lesson: "queue",
    name: "swallowed-death",
    about: "three producers put 100 numbers each into a queue; the parent adds them up",
};

const PRODUCERS: u64 = 3;
const EACH: u64 = 100;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let queue = Queue::new()?;
    let mut producers = Children::new("producer");
    for producer in 0..PRODUCERS {
        producers.fork(|| -> anyhow::Result<()> {
            for i in 0..EACH {
                if i == EACH / 2 {
                    fault::inject(producer as usize); // the check kills producer 1 here
                }
                queue.put(&(producer * EACH + i).to_le_bytes())?;
            }
            Ok(())
        })?;
    }
    let (mut count, mut sum) = (0, 0);
    while count < PRODUCERS * EACH {
        match queue.get() {
            Ok(Some(number)) => sum += u64::from_le_bytes(number[..].try_into()?),
            _ => break,
        }
        count += 1;
    }
    producers.join_each()?; // Python: for p in producers: p.join()
    println!("got {count} numbers, sum {sum}");
    Ok(())
}
// ANCHOR_END: exercise

//! Exercise when-slower/checksums-only: two workers make 32 images of 256 KiB each and send
//! them to the parent, which needs only each image's checksum. The checksums are right, but
//! every image crosses a pipe into fresh memory in the parent. Move only what the parent
//! needs: the check counts the pages every process touches.

use anyhow::Context;
use multiproc::proc::Children;
use multiproc::queue::Queue;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "when-slower",
    name: "checksums-only",
    about: "two workers make 32 images; the parent needs their checksums",
};

const IMAGES: usize = 32;
const WORKERS: usize = 2;
const PIXELS: usize = 64 * 1024; // u32 each: 256 KiB an image

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

/// Make image `n` into `image`.
fn make(n: usize, image: &mut [u32]) {
    for (i, pixel) in image.iter_mut().enumerate() {
        *pixel = (n * 7919 + i * 31) as u32;
    }
}

/// An image's checksum.
fn checksum(pixels: impl Iterator<Item = u32>) -> u64 {
    pixels.fold(0u64, |sum, p| sum.wrapping_mul(31).wrapping_add(u64::from(p)))
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut results = Queue::new()?;
    let mut workers = Children::new("worker");
    for w in 0..WORKERS {
        workers.fork(|| -> anyhow::Result<()> {
            let mut image = vec![0u32; PIXELS];
            for n in (w..IMAGES).step_by(WORKERS) {
                make(n, &mut image);
                let mut message = (n as u32).to_le_bytes().to_vec();
                message.extend(image.iter().flat_map(|p| p.to_le_bytes())); // the whole image
                results.put(&message)?;
            }
            Ok(())
        })?;
    }
    results.close(); // the parent puts nothing
    let mut sums = vec![0u64; IMAGES];
    for _ in 0..IMAGES {
        let message = results.get()?.context("a worker ended early")?;
        let n = u32::from_le_bytes(message[..4].try_into()?) as usize;
        let pixels =
            message[4..].chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
        sums[n] = checksum(pixels);
    }
    workers.join_all()?;
    println!("{} checksums, combined {}", sums.len(), sums.iter().fold(0u64, |a, s| a ^ s));
    Ok(())
}
// ANCHOR_END: exercise

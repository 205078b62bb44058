// A String's bytes live in one process's heap: a Value holds only plain data.
use multiproc::shm::Value;

fn main() {
    let _name = Value::new(String::from("Sam"));
}

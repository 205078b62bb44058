"""Starting an MPI job from a Python twin, as crates/mpijob does for a Rust lesson.

mpiexec runs as the first process of a PID namespace of its own (`unshare --pid --fork
--mount-proc --kill-child`), and `unshare` dies with the twin (PR_SET_PDEATHSIG): when
mpiexec dies, however it dies, the kernel kills every other process of the job. Every rank's
output is read (mpiexec's `-prepend-rank` marks each line with its rank) and a rank that did
not print FINISHED last did not finish, whatever mpiexec's exit status says. A deadline
kills the job whole. A rank runs its work through `rank(main)`: an exception it does not catch
is printed, in one write, and the rank ends at once; the launcher then ends the whole job
(without it, the others would wait forever for the failed rank's messages).

mpi4py's wheel from PyPI loads the MPI library as `libmpi.so.12`, which Debian's MPICH calls
`libmpich.so.12`: where that name is missing, a link to MPICH's library under that name is
made in the repo's `target/mpi4py/` (once; it is a build product, like target/'s others), and
the ranks find it through LD_LIBRARY_PATH.
"""

import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import traceback

import lessonkit

FINISHED = "mpijob: rank finished"  # as crates/mpijob: a rank's last line, once MPI is done
INSTALL = "this needs MPICH and mpi4py: apt-get install mpich libmpich-dev, then pip install mpi4py"
DEADLINE_S = 60
LINKS = pathlib.Path(__file__).resolve().parents[3] / "target" / "mpi4py"


class JobFailed(Exception):
    """How a job failed: mpiexec's status (`how`: which failing process reported first decides
    it), and what each rank that did not finish said last (`said`)."""

    def __init__(self, how, said):
        super().__init__(f"the MPI job failed ({how}): {'; '.join(said)}")
        self.how, self.said = how, said


def missing():
    """Why MPI jobs cannot run from Python here (one line), or None."""
    if not any(os.access(os.path.join(d, "mpiexec"), os.X_OK) for d in os.environ.get("PATH", "").split(":")):
        return f"no mpiexec on PATH: {INSTALL}"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return f"no mpi4py: {INSTALL}"
    return None


def library_path():
    """LD_LIBRARY_PATH for the ranks: with a link named libmpi.so.12 where it is needed."""
    path = os.environ.get("LD_LIBRARY_PATH", "")
    try:
        ctypes.CDLL("libmpi.so.12")
        return path
    except OSError:
        pass
    mpich = ctypes.CDLL("libmpich.so.12")  # raises, saying so, if MPICH is not there either
    del mpich
    with open("/proc/self/maps") as maps:
        found = [line.split()[-1] for line in maps if "/libmpich.so.12" in line]
    LINKS.mkdir(parents=True, exist_ok=True)
    link = LINKS / "libmpi.so.12"
    if not link.exists():
        tmp = LINKS / f"libmpi.so.12.{os.getpid()}"
        os.symlink(found[0], tmp)
        os.replace(tmp, link)  # atomic: two twins at once both end with the same link
    return f"{LINKS}:{path}" if path else str(LINKS)


def _children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    after_name = f.read().rsplit(") ", 1)[1]
            except (OSError, IndexError):
                continue
            if after_name.split(" ")[1] == str(pid):
                kids.append(int(entry))
    return kids


def run(ranks, args, env=None, deadline_s=DEADLINE_S):
    """Run `ranks` ranks of `python3 <args>`; return each rank's lines (without
    FINISHED). Raises JobFailed naming every rank that did not finish, with its last line."""
    environment = dict(os.environ, LD_LIBRARY_PATH=library_path(), PYTHONDONTWRITEBYTECODE="1")
    environment.update(env or {})
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        command.append("--map-root-user")
    command += ["mpiexec", "-n", str(ranks), "-prepend-rank", sys.executable, *args]
    parent = os.getpid()
    job = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=environment,
                           preexec_fn=lambda: lessonkit.die_with_parent(parent))
    try:
        text, _ = job.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        for mpiexec in _children_of(job.pid):  # the namespace dies with it
            os.kill(mpiexec, signal.SIGKILL)
        job.wait()
        raise JobFailed("killed", [f"the job did not end within {deadline_s} s: killed, with every rank"])
    lines = [[] for _ in range(ranks)]
    launcher = []
    for line in text.decode(errors="replace").splitlines():
        rank, sep, rest = line.partition("] ")
        if line.startswith("[") and sep and rank[1:].isdigit() and int(rank[1:]) < ranks:
            lines[int(rank[1:])].append(rest)
        else:
            launcher.append(line)
    unfinished = [f"rank {r} did not finish; its last line: {said[-1]}" if said
                  else f"rank {r} did not finish, and printed nothing"
                  for r, said in enumerate(lines) if not said or said[-1] != FINISHED]
    if unfinished or job.returncode != 0:
        how = (f"exit status {job.returncode}" if job.returncode >= 0
               else f"killed by signal {-job.returncode}")
        said = unfinished or [line for line in launcher if line.strip()][:3]
        raise JobFailed(how, said)
    return [said[:-1] for said in lines]


def rank(main):
    """Run a rank's `main()`. An exception it does not catch is printed, in one write (mpiexec
    marks each piece of a rank's output with its rank), and the rank ends at once, without
    finishing MPI: the launcher sees a rank gone and ends the job. (mpi4py's `python -m mpi4py`
    calls MPI_Abort instead, and then the launcher may drop the rank's last words unread.)"""
    try:
        main()
    except BaseException:
        os.write(2, traceback.format_exc().encode())
        os._exit(1)


def finish(mpi):
    """End MPI in this rank (mpi4py's `MPI`), then say so on the rank's last line."""
    mpi.Finalize()
    os.write(1, f"{FINISHED}\n".encode())  # one write: see the ranks' `say`


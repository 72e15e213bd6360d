//! ATen's OpenMP team, for our own loops over host memory.
//!
//! libtorch runs its GEMMs and elementwise kernels on an OpenMP team whose
//! threads spin between parallel regions (libgomp's default wait policy),
//! so a region started a few microseconds after the last finds them awake.
//! rayon's workers instead fall asleep when idle, and a loop run on rayon
//! between two ATen calls pays for waking them: a futex wake costs about
//! 100 µs on the VMs measured here. Running the loop on the OpenMP team
//! itself, through libgomp's entry point `GOMP_parallel` (what `#pragma omp
//! parallel` compiles to, and what `at::parallel_for` calls), avoids that:
//! on the 784-512-512-10 minibatch step, Adam's pass on the team made the
//! step about a tenth faster than the same pass on rayon
//! (`eigentrace bench train` times both in the same rounds). With
//! `OMP_WAIT_POLICY=passive` the team sleeps too, and the two come out
//! even.
//!
//! The symbols are looked up at run time in the libgomp that libtorch
//! loaded; where there is none (a libtorch built without OpenMP, or with an
//! OpenMP runtime that lacks the GNU entry points), [`parallel`] says so and
//! the caller uses rayon.

use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

type ParallelFn = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, u32, u32);
type IntFn = unsafe extern "C" fn() -> i32;

struct Gomp {
    parallel: ParallelFn,
    thread_num: IntFn,
    num_threads: IntFn,
    max_threads: IntFn,
}

fn gomp() -> Option<&'static Gomp> {
    static GOMP: OnceLock<Option<Gomp>> = OnceLock::new();
    GOMP.get_or_init(|| {
        let sym = |name: &std::ffi::CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT searches the objects already
            // loaded (libtorch's libgomp among them); a null is handled.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let (p, t, n, m) = (
            sym(c"GOMP_parallel")?,
            sym(c"omp_get_thread_num")?,
            sym(c"omp_get_num_threads")?,
            sym(c"omp_get_max_threads")?,
        );
        // SAFETY: these are libgomp's documented C signatures.
        unsafe {
            Some(Gomp {
                parallel: std::mem::transmute::<*mut c_void, ParallelFn>(p),
                thread_num: std::mem::transmute::<*mut c_void, IntFn>(t),
                num_threads: std::mem::transmute::<*mut c_void, IntFn>(n),
                max_threads: std::mem::transmute::<*mut c_void, IntFn>(m),
            })
        }
    })
    .as_ref()
}

/// The team size a parallel region started from this thread gets (what
/// `tch::set_num_threads` set), or None without libgomp.
pub(crate) fn max_threads() -> Option<usize> {
    // SAFETY: a plain query of the calling thread's OpenMP settings.
    gomp().map(|g| unsafe { (g.max_threads)() }.max(1) as usize)
}

struct Job<'a> {
    gomp: &'a Gomp,
    body: &'a (dyn Fn(usize, usize) + Sync),
    /// A panic in any thread, carried out of the C frames and resumed on
    /// the calling thread.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

extern "C" fn trampoline(data: *mut c_void) {
    // SAFETY: `data` is the `Job` that `parallel` keeps alive until
    // GOMP_parallel returns, after every thread has left this function.
    let job = unsafe { &*(data as *const Job<'_>) };
    // SAFETY: plain queries of the current team.
    let (i, n) = unsafe { ((job.gomp.thread_num)(), (job.gomp.num_threads)()) };
    let run = std::panic::AssertUnwindSafe(|| (job.body)(i.max(0) as usize, n.max(1) as usize));
    if let Err(e) = std::panic::catch_unwind(run) {
        job.panic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

/// Run `body(thread, threads)` once on every thread of the calling thread's
/// OpenMP team and wait for all of them. False, without running it, where
/// libgomp is not loaded.
pub(crate) fn parallel(body: &(dyn Fn(usize, usize) + Sync)) -> bool {
    let Some(gomp) = gomp() else {
        return false;
    };
    let job = Job {
        gomp,
        body,
        panic: Mutex::new(None),
    };
    // SAFETY: `trampoline` only reads `job`, which outlives the call;
    // num_threads 0 is the team size of the calling thread's settings.
    unsafe { (gomp.parallel)(trampoline, &job as *const Job<'_> as *mut c_void, 0, 0) };
    if let Some(p) = job.panic.into_inner().unwrap_or_else(|p| p.into_inner()) {
        std::panic::resume_unwind(p);
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// libtorch's libgomp is found, and a region runs the body once per
    /// thread of the team that `tch::set_num_threads` asked for, each with
    /// its own index.
    #[test]
    fn a_region_runs_once_on_every_thread_of_the_team() {
        tch::set_num_threads(3);
        assert_eq!(super::max_threads(), Some(3));
        let seen: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let team = AtomicUsize::new(0);
        assert!(super::parallel(&|i, n| {
            seen[i].fetch_add(1, Ordering::SeqCst);
            team.store(n, Ordering::SeqCst);
        }));
        assert_eq!(team.load(Ordering::SeqCst), 3);
        assert!(seen.iter().all(|s| s.load(Ordering::SeqCst) == 1));
    }

    /// A panic on a team thread reaches the caller instead of aborting.
    #[test]
    fn a_panic_in_the_region_reaches_the_caller() {
        tch::set_num_threads(2);
        let r = std::panic::catch_unwind(|| {
            super::parallel(&|i, _| {
                if i == 1 {
                    panic!("thread one");
                }
            })
        });
        let msg = r.expect_err("the panic comes back");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"thread one"));
    }
}

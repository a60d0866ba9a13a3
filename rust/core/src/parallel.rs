//! Rayon pools sized by `n_threads`, cached per size and rebuilt after `fork()`.
//!
//! Pools are keyed by the process id: a child created by `fork()` never touches the parent's
//! worker threads (they do not exist in the child), it builds its own.

use crate::error::{Error, Result};
use faer::Par;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

type PoolCache = Mutex<(u32, HashMap<usize, Arc<rayon::ThreadPool>>)>;

fn cache() -> &'static PoolCache {
    static CACHE: OnceLock<PoolCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new((std::process::id(), HashMap::new())))
}

/// The default thread count: every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn pool(n_threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    let mut guard = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if guard.0 != pid {
        // Forked child: the parent's workers are gone; forget (and leak) their pools.
        let stale = std::mem::take(&mut guard.1);
        std::mem::forget(stale);
        guard.0 = pid;
    }
    if let Some(p) = guard.1.get(&n_threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("lorainne-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let p = Arc::new(p);
    guard.1.insert(n_threads, p.clone());
    Ok(p)
}

/// Runs `work` with `n_threads` threads (None: all cores). One thread runs inline, without a pool.
pub fn run<R: Send>(n_threads: Option<usize>, work: impl FnOnce(Par) -> R + Send) -> Result<R> {
    let n = n_threads.unwrap_or_else(default_threads);
    if n == 0 {
        return Err(Error::invalid("n_threads", "must be at least 1"));
    }
    if n == 1 {
        return Ok(work(Par::Seq));
    }
    let p = pool(n)?;
    Ok(p.install(|| work(Par::rayon(n))))
}

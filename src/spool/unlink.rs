//! Deleting collected segment files off the shard's executor.
//!
//! An unlink can wait on the file system journal, and a shard only ever
//! awaits, so unlinks run on glommio's blocking pool. The unlink need not be
//! synced: a segment that comes back after a crash holds only finished
//! messages, or markers for messages whose segment is gone (duplicates at
//! worst, never loss). `idle` lets shutdown wait for them, so none is cut off
//! half way when the executor stops.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;

#[derive(Default)]
pub struct Unlinks {
    in_flight: Cell<usize>,
    waiting: RefCell<Vec<oneshot::Sender<()>>>,
}

impl Unlinks {
    /// Delete `paths` in the background.
    pub fn remove(self: &Rc<Self>, paths: Vec<Arc<PathBuf>>) {
        if paths.is_empty() {
            return;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let this = self.clone();
        glommio::spawn_local(async move {
            glommio::executor().spawn_blocking(move || paths.iter().for_each(|p| unlink(p))).await;
            this.in_flight.set(this.in_flight.get() - 1);
            if this.in_flight.get() == 0 {
                for waiter in this.waiting.take() {
                    let _ = waiter.send(());
                }
            }
        })
        .detach();
    }

    /// Returns once every unlink started so far is done.
    pub async fn idle(&self) {
        if self.in_flight.get() == 0 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().push(tx);
        let _ = rx.await;
    }
}

fn unlink(path: &PathBuf) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("spool: cannot remove {}: {e}", path.display());
        }
    }
}

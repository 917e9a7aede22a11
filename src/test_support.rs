//! Helpers shared by the crate's unit tests.

/// Run `body` on a fresh, unpinned glommio executor (on its own thread,
/// with its own blocking pool) and return what its future gives.
pub fn on_executor<T, F, Fut>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(body).unwrap().join().unwrap()
}

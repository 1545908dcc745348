//! Readbacks as futures, for the browser.
//!
//! WebGPU maps a buffer for reading only once control has gone back to the page's event loop, so
//! every path that reads the device back is `async`. Natively the waits inside those paths poll
//! the device until the work is done, so their futures are complete the first time they are
//! polled: the blocking API ([`crate::Session::feed`] and the like) runs them with [`now`], which
//! needs no executor: one poll with a no-op waker.

use std::future::Future;
use std::task::{Poll, Waker};

use crate::error::{Error, Result};

/// The result of a readback future that completes without waiting for an event loop (every one,
/// natively). In a browser, where readbacks wait for the page, it is an error that names the
/// `_async` form to use instead.
pub fn now<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(Error::Gpu(
            "this call reads the device back synchronously, which a browser cannot do: use its `_async` form".into(),
        )),
    }
}

/// Waits until `slice` is mapped: natively by polling the device, in the browser by yielding to
/// the page until WebGPU calls back.
pub(crate) async fn mapped(ctx: &super::Context, slice: wgpu::BufferSlice<'_>, mode: wgpu::MapMode) -> Result<()> {
    let mapping = |r: std::result::Result<(), wgpu::BufferAsyncError>| {
        r.map_err(|e| Error::Gpu(format!("mapping a staging buffer: {e}")))
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(mode, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait(None)?;
        mapping(rx.recv().map_err(|_| Error::Gpu("buffer mapping callback never ran".into()))?)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(mode, move |r| {
            let _ = tx.send(r);
        });
        let r = rx.await.map_err(|_| Error::Gpu("buffer mapping callback never ran".into()))?;
        ctx.take_errors()?;
        mapping(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_resolve_and_pending_ones_name_the_async_form() {
        assert_eq!(now(async { Ok(7) }).unwrap(), 7);
        let err = now(std::future::pending::<Result<()>>()).unwrap_err().to_string();
        assert!(err.contains("_async"), "{err}");
    }
}

//! temp
use sidetask::AsyncCtx;
use std::hint::black_box;
use std::time::Instant;
fn main() {
    let which = std::env::args().nth(1).unwrap();
    let n: u32 = std::env::args()
        .nth(2)
        .map_or(2_000_000, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            match which.as_str() {
                "ours" => {
                    for _ in 0..n {
                        let task = sidetask::spawn_async(|_: AsyncCtx| async {
                            Ok::<_, ()>(black_box(1))
                        });
                        black_box(task.await);
                    }
                }
                "theirs" => {
                    for _ in 0..n {
                        let h = tokio::spawn(async { black_box(1) });
                        black_box(h.await.ok());
                    }
                }
                "rt_ours" => {
                    let task = sidetask::spawn_async(|ctx: AsyncCtx<u64, u64>| async move {
                        while let Ok(n) = ctx.recv().await {
                            if ctx.emit(n).await.is_err() {
                                break;
                            }
                        }
                        Ok::<_, ()>(())
                    });
                    for i in 0..n as u64 {
                        task.send_async(i).await.unwrap();
                        assert_eq!(task.recv_async().await.unwrap(), i);
                    }
                }
                _ => {
                    let (to_tx, mut to_rx) = tokio::sync::mpsc::channel::<u64>(1);
                    let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<u64>(1);
                    tokio::spawn(async move {
                        while let Some(n) = to_rx.recv().await {
                            if back_tx.send(n).await.is_err() {
                                break;
                            }
                        }
                    });
                    for i in 0..n as u64 {
                        to_tx.send(i).await.unwrap();
                        assert_eq!(back_rx.recv().await.unwrap(), i);
                    }
                }
            }
            println!(
                "{which}: {:.3}µs",
                start.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        })
        .await
        .unwrap()
    });
}

//! Per detector: samples/s over a long hourly series, and the heap its state holds per
//! series once warmed up (measured with a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use spendwatch::eval::detectors::{self, Detector, NAMES, Sample};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn series(n: usize) -> Vec<Sample> {
    let start: Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let daily = (std::f64::consts::TAU * (i % 24) as f64 / 24.0).sin();
            Sample {
                at: start + SignedDuration::from_hours(i as i64),
                value: 100.0 * (1.0 + 0.3 * daily + 0.1 * noise),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let samples = series(20_000);
    let mut group = c.benchmark_group("detectors");
    group.throughput(Throughput::Elements(samples.len() as u64));
    for name in NAMES {
        // Heap held by one series' warmed-up state.
        let before = LIVE.load(Ordering::Relaxed);
        let mut d = detectors::build(name, &[]).unwrap();
        for s in &samples {
            d.observe(*s);
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        // What the store keeps for the series between evaluations.
        let stored = d.save().map_or(0, |json| json.len());
        let started = Instant::now();
        let mut fresh = detectors::build(name, &[]).unwrap();
        for s in &samples {
            std::hint::black_box(fresh.observe(*s));
        }
        let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "{name}: {rate:.0} samples/s, {bytes} bytes of state per series in memory, {stored} bytes stored"
        );
        drop(d);
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut d = detectors::build(name, &[]).unwrap();
                for s in &samples {
                    std::hint::black_box(d.observe(*s));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

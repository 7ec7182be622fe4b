#if canImport(Glibc)
import Glibc
#endif

/// How much longer than nominal the tests' bounded waits (watchdogs, "eventually"
/// loops) may run before they call something hung.
///
/// Swift Testing runs every suite in parallel on a cooperative pool as wide as the
/// machine (2 threads here), and the NBD server suites block their pool threads in
/// libnbd calls; under a sanitizer (3–10× slower) or on a loaded CI machine a test
/// can wait minutes for a pool thread without anything being wrong. The nominal
/// bounds are right for a quiet release machine; `NVME_NBD_TEST_WAIT_SCALE`
/// (1...50, default 1; `scripts/test` sets 2, `--sanitizers` 4) stretches them. A real
/// lost completion still fails, only later.
public enum WaitScale {
    public static let factor: Double = {
        guard let raw = getenv("NVME_NBD_TEST_WAIT_SCALE"), let v = Double(String(cString: raw)), v.isFinite else {
            return 1
        }
        return min(max(v, 1), 50)
    }()

    /// `seconds` stretched by ``factor``.
    public static func seconds(_ seconds: Double) -> Double { seconds * factor }
}

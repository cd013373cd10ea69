// Package leaktest checks, after a test package's tests, that no goroutine
// outlived them (go.uber.org/goleak), apart from the libraries' own
// long-lived or self-ending goroutines listed here once for every package.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// ignored are goroutines of the libraries that are bounded and not ours to
// stop: fasthttp's server worker-pool cleaner, which notices Shutdown only
// after its 10-s sleep; fasthttp's once-per-process date updater and DNS
// cache cleaner; its client cleaners, which end within the idle timeout of
// the last connection closing; and the process-wide goroutine pool (ants)
// gnet creates when its package loads.
var ignored = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
	goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
}

// VerifyTestMain runs the package's tests and fails it when a goroutine
// outlived them. Call it from TestMain.
func VerifyTestMain(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(extra, ignored...)...)
}

// Find reports the goroutines that outlived the tests, for a TestMain that
// has more to do after m.Run.
func Find(extra ...goleak.Option) error {
	return goleak.Find(append(extra, ignored...)...)
}

module github.com/modelgate/modelgate/third_party/gnet

require (
	github.com/panjf2000/ants/v2 v2.11.3
	github.com/valyala/bytebufferpool v1.0.0
	go.uber.org/zap v1.27.0
	golang.org/x/sync v0.11.0
	golang.org/x/sys v0.30.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require go.uber.org/multierr v1.11.0 // indirect

go 1.20

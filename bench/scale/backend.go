package main

import (
	"net"

	"github.com/valyala/fasthttp"
)

// backend is a stand-in model server in the bench's process (so its memory
// is not the gateway's): it answers every request with its name, which
// tells which deployment served a request. Every endpoint's blue deployment
// points at one backend, every green one at another.
type backend struct {
	srv  *fasthttp.Server
	addr string
}

func startBackend(name string) (*backend, error) {
	body := []byte(`{"predictions":[0.12,0.88],"deployment":"` + name + `"}`)
	b := &backend{srv: &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.Header.Set("X-Backend", name)
		ctx.SetBody(body)
	}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	go b.srv.Serve(ln)
	return b, nil
}

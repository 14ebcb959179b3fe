package loadtest

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// NewReverseProxy is the baseline Go proxy: httputil.ReverseProxy in front
// of upstream, with the Transport tuned as a careful Go developer would
// (PERFORMANCE.md): keep-alive, up to 1,000 idle connections kept to the
// one upstream host instead of the default 2, no HTTP/2 attempt, no proxy
// from the environment.
func NewReverseProxy(upstream *url.URL) *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   1000,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		Transport: tr,
	}
}

package statusd

import (
	"net/http"
	"net/http/pprof"

	"github.com/go-kit/log/level"
)

// routes builds the server's mux. It never touches http.DefaultServeMux.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// Like upstream, status and metrics answer any method.
	mux.HandleFunc("/_status", s.handleStatus)
	mux.HandleFunc("/_status/{name...}", s.handleTunnelStatus)

	mux.HandleFunc("/_metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") == "prometheus" {
			s.metrics.prometheus.ServeHTTP(w, r)
			return
		}
		s.metrics.serveJSON(w, r)
	})
	mux.HandleFunc("/_metrics/json", s.metrics.serveJSON)
	mux.Handle("/_metrics/prometheus", s.metrics.prometheus)

	if s.cfg.EnablePprof {
		// Index also serves the named profiles (goroutine, heap, ...).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", serveCmdline) // secrets redacted
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	if s.cfg.EnableShutdown {
		mux.HandleFunc("/_shutdown", s.handleShutdown)
	}
	if s.cfg.EnableReload && s.cfg.Reload != nil {
		mux.HandleFunc("/_reload", s.handleReload)
	}
	for path, h := range s.cfg.Routes {
		mux.Handle(path, h)
	}
	return mux
}

// handleReload answers POST by reloading: 200 "ok", or 500 with the error.
// Other methods get 405.
func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	level.Info(s.logger).Log("msg", "reload requested via status endpoint", "remote", r.RemoteAddr)
	if err := s.cfg.Reload(); err != nil {
		http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write([]byte("ok\n"))
}

// handleShutdown answers POST with 200 and starts the drain (once); other
// methods get 405.
func (s *Server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.shutdownOnce.Do(func() {
		level.Info(s.logger).Log("msg", "shutdown was requested via status endpoint", "remote", r.RemoteAddr)
		s.cfg.Shutdown()
	})
}

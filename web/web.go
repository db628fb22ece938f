// Package web serves the live status page: today's races ("/"), one race
// with its money-flow charts ("/races/{id}"), the pipeline's health
// ("/pipeline") and a poison message's details ("/poison/{id}"), plus the
// JSON each page refreshes itself from ("/api/..."). HTML, CSS and
// JavaScript are embedded; the charts are drawn as SVG by the page's own
// script, so there is no build step.
//
// It is read-only: every route is GET (HEAD), nothing changes state
// (requeueing poison stays with the CLI), so it needs no authentication to
// be safe. The data comes from the status read model only.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/raceflow/raceflow/status"
)

// Pages is the read model the handler serves; *status.Model implements it.
type Pages interface {
	Races(ctx context.Context) (status.RacesPage, error)
	Race(ctx context.Context, id string) (status.RacePage, error)
	Pipeline(ctx context.Context) (status.PipelinePage, error)
	PoisonMessage(ctx context.Context, id int64) (status.PoisonEntry, error)
}

// Config shapes the pages. Start from DefaultConfig.
type Config struct {
	// Refresh is how often a page reloads its data while not paused.
	Refresh time.Duration
}

// DefaultConfig refreshes every 2 s.
func DefaultConfig() Config { return Config{Refresh: 2 * time.Second} }

// maxRefresh is the slowest refresh the page may have and still be live.
const maxRefresh = 2 * time.Second

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Refresh < 100*time.Millisecond || c.Refresh > maxRefresh {
		return fmt.Errorf("web: Refresh %s must be within 100ms..%s", c.Refresh, maxRefresh)
	}
	return nil
}

//go:embed assets
var assets embed.FS

// New returns the status page's handler; mount it at "/" (its routes do not
// overlap /metrics, /healthz or /readyz). cfg is validated.
func New(pages Pages, cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pages == nil {
		return nil, errors.New("web: pages are required")
	}
	tmpl, err := template.ParseFS(assets, "assets/page.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("web: assets: %w", err)
	}
	s := &server{pages: pages, cfg: cfg, tmpl: tmpl}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.racesPage)
	mux.HandleFunc("GET /races/{id}", s.racePage)
	mux.HandleFunc("GET /pipeline", s.pipelinePage)
	mux.HandleFunc("GET /poison/{id}", s.poisonPage)
	mux.HandleFunc("GET /api/races", s.racesData)
	mux.HandleFunc("GET /api/races/{id}", s.raceData)
	mux.HandleFunc("GET /api/pipeline", s.pipelineData)
	mux.HandleFunc("GET /api/poison/{id}", s.poisonData)
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(5*time.Minute, http.FileServerFS(static))))
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, view{Page: "error", Title: "Not found", Error: "no page at " + r.URL.Path, Status: http.StatusNotFound})
	})
	return secure(mux), nil
}

type server struct {
	pages Pages
	cfg   Config
	tmpl  *template.Template
}

// view is what page.html renders: the shell of one page, with its first
// data inline so it paints without waiting for the first refresh.
type view struct {
	Page      string // races, race, pipeline, poison, error
	Title     string
	API       string // the data endpoint the page refreshes from; "" for static pages
	RefreshMS int64
	Data      any    // marshalled into the page as JSON
	Error     string // shown as the banner
	Status    int
	Poison    *status.PoisonEntry
}

func (s *server) render(w http.ResponseWriter, v view) {
	if v.Status == 0 {
		v.Status = http.StatusOK
	}
	v.RefreshMS = s.cfg.Refresh.Milliseconds()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(v.Status)
	_ = s.tmpl.ExecuteTemplate(w, "page.html", v)
}

// errorView turns a read model error into the page and status it deserves.
func errorView(err error) view {
	code, title := statusOf(err)
	return view{Page: "error", Title: title, Error: err.Error(), Status: code}
}

func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, status.ErrMalformedID):
		return http.StatusBadRequest, "Bad request"
	case errors.Is(err, status.ErrRaceNotFound), errors.Is(err, status.ErrPoisonNotFound):
		return http.StatusNotFound, "Not found"
	default:
		return http.StatusServiceUnavailable, "Data unavailable"
	}
}

func (s *server) racesPage(w http.ResponseWriter, r *http.Request) {
	page, err := s.pages.Races(r.Context())
	v := view{Page: "races", Title: "Today's races", API: "/api/races", Data: page}
	if err != nil {
		// The shell still loads and keeps retrying; the banner says why
		// it is empty.
		v.Data, v.Error, v.Status = nil, err.Error(), http.StatusServiceUnavailable
	}
	s.render(w, v)
}

func (s *server) racePage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	page, err := s.pages.Race(r.Context(), id)
	if err != nil {
		v := errorView(err)
		if v.Status == http.StatusServiceUnavailable {
			// A valid id whose data did not come: the page retries.
			v.Page, v.Title, v.API = "race", "Race", "/api/races/"+id
		}
		s.render(w, v)
		return
	}
	s.render(w, view{Page: "race", Title: fmt.Sprintf("%s R%d", page.Race.MeetingName, page.Race.Number),
		API: "/api/races/" + id, Data: page})
}

func (s *server) pipelinePage(w http.ResponseWriter, r *http.Request) {
	page, err := s.pages.Pipeline(r.Context())
	v := view{Page: "pipeline", Title: "Pipeline", API: "/api/pipeline", Data: page}
	if err != nil {
		v.Data, v.Error, v.Status = nil, err.Error(), http.StatusServiceUnavailable
	}
	s.render(w, v)
}

func (s *server) poisonPage(w http.ResponseWriter, r *http.Request) {
	id, err := status.ParsePoisonID(r.PathValue("id"))
	if err == nil {
		var e status.PoisonEntry
		if e, err = s.pages.PoisonMessage(r.Context(), id); err == nil {
			s.render(w, view{Page: "poison", Title: fmt.Sprintf("Poison message %d", id), Poison: &e})
			return
		}
	}
	s.render(w, errorView(err))
}

func (s *server) racesData(w http.ResponseWriter, r *http.Request) {
	page, err := s.pages.Races(r.Context())
	writeJSON(w, page, err)
}

func (s *server) raceData(w http.ResponseWriter, r *http.Request) {
	page, err := s.pages.Race(r.Context(), r.PathValue("id"))
	writeJSON(w, page, err)
}

func (s *server) pipelineData(w http.ResponseWriter, r *http.Request) {
	page, err := s.pages.Pipeline(r.Context())
	writeJSON(w, page, err)
}

func (s *server) poisonData(w http.ResponseWriter, r *http.Request) {
	id, err := status.ParsePoisonID(r.PathValue("id"))
	var e status.PoisonEntry
	if err == nil {
		e, err = s.pages.PoisonMessage(r.Context(), id)
	}
	writeJSON(w, e, err)
}

// apiError is the body of a failed data request.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		code, _ := statusOf(err)
		w.WriteHeader(code)
		v = apiError{Error: err.Error()}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// secure sets headers that keep the page's data its own: no framing, no
// sniffing, scripts and styles from the page's origin only (the inline
// data block is JSON, which never runs).
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

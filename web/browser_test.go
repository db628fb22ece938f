package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/status/statustest"
	"github.com/raceflow/raceflow/web"
)

// Environment of the browser test.
const (
	// envChromium names the browser binary; default: chromium on PATH.
	envChromium = "RACEFLOW_CHROMIUM"
	// envArtifacts is where screenshots go; default: a directory under the
	// system's temporary directory, printed by the test.
	envArtifacts = "RACEFLOW_TEST_ARTIFACTS"
	// envDocsScreenshots set to 1 also writes them into docs/ for the README.
	envDocsScreenshots = "RACEFLOW_DOCS_SCREENSHOTS"
)

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skipf("no Chromium (Debian: apt-get install chromium; or set %s): the browser test needs one", envChromium)
	return ""
}

// browser starts a headless Chromium with a fresh profile; the test's end
// closes it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	// A bound far beyond a healthy run, so a broken page fails instead of
	// hanging; every step below waits on the page's DOM, not on time.
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	return ctx
}

// artifacts returns where screenshots are saved.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(envArtifacts)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "raceflow-status-screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// screenshot saves the page as an artifact, and into docs/ for the README
// when asked and forDocs.
func screenshot(t *testing.T, ctx context.Context, name string, forDocs bool) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err, "screenshot %s", name)
	path := filepath.Join(artifacts(t), name+".png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
	if forDocs && os.Getenv(envDocsScreenshots) == "1" {
		require.NoError(t, os.WriteFile(filepath.Join("..", "docs", name+".png"), png, 0o644))
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

// do runs steps, each step waiting at most a minute (far beyond a healthy
// page); on failure it reports the page's banner, which shows the page's
// own errors.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, st := range steps {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := chromedp.Do(sctx, st)
		cancel()
		if err != nil {
			banner, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("banner")?.textContent ?? ""`))
			url, _ := chromedp.Run(ctx, chromedp.Location())
			t.Fatalf("browser step %d on %s: %v; page banner: %q", i+1, url, err, banner)
		}
	}
}

// until waits until a JavaScript expression is truthy in the page.
// shown waits until sel matches a rendered element, looking in the page
// itself each time. The page rebuilds its content on every refresh, so a
// node that one protocol call found may be gone by the next: chromedp's
// WaitVisible and Click then fail with "Could not find node with given id".
func shown(sel string) chromedp.Action[chromedp.Void] {
	return until(`(e => e !== null && e.getClientRects().length > 0)(document.querySelector(` + jsString(sel) + `))`)
}

// click waits until sel is shown, then clicks it from within the page.
func click(sel string) chromedp.Action[chromedp.Void] {
	show := shown(sel)
	press := chromedp.Evaluate[chromedp.Void](`document.querySelector(` + jsString(sel) + `).click()`)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := show(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		return press(ctx, t)
	}
}

// follow clicks the link sel and waits for the page it leads to.
func follow(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := chromedp.RunResponse(sctx, click(sel))
	require.NoError(t, err, "follow %s", sel)
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}

func until(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0), chromedp.WithPollingMutation())
}

// TestStatusPageInABrowser runs the service on the simulator, serves the
// status page, and drives it in headless Chromium: the races, one race's
// charts with a point per poll, a staged plunge's alerts on both pages and
// on the charts, the pipeline's hops, the live refresh and its pause
// control, and a phone's width.
func TestStatusPageInABrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	f := statustest.Start(t, config.BackendPostgres)
	bad := f.HorseRaces(t, 1)[0]
	require.NoError(t, f.Sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	h, err := web.New(f.Model, web.DefaultConfig())
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	race := f.RaceWithPolls(t, 6)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	// Today's races (the simulator has one day): every race in a row, the
	// chosen one linked, the broken one flagged.
	var dayRaces int
	require.NoError(t, f.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM races`).Scan(&dayRaces))
	do(t, ctx,
		chromedp.Navigate(srv.URL+"/"),
		shown(`tr.race-row[data-race="`+race+`"] a`),
		until(`document.querySelector('tr.race-row[data-race="`+bad+`"]')?.classList.contains("failing")`),
	)
	require.Equal(t, dayRaces, eval[int](t, ctx, `document.querySelectorAll("tr.race-row").length`), "a row per race")
	screenshot(t, ctx, "status-races", true)

	// A filter in the address keeps one meeting's races.
	var meeting string
	var meetingRaces int
	require.NoError(t, f.DB.Pool.QueryRow(context.Background(),
		`SELECT meeting_id, (SELECT count(*) FROM races o WHERE o.meeting_id = r.meeting_id) FROM races r WHERE race_id = $1`,
		race).Scan(&meeting, &meetingRaces))
	do(t, ctx,
		chromedp.Navigate(srv.URL+"/?meeting="+meeting),
		shown(`tr.race-row[data-race="`+race+`"] a`),
	)
	require.Equal(t, meetingRaces, eval[int](t, ctx, `document.querySelectorAll("tr.race-row").length`), "the meeting's races only")
	require.Equal(t, meeting, eval[string](t, ctx, `document.getElementById("filter-meeting").value`))

	// The page refreshes itself; the pause control toggles.
	gen := eval[int](t, ctx, `Number(document.getElementById("app").dataset.generation)`)
	do(t, ctx,
		until(fmt.Sprintf(`Number(document.getElementById("app").dataset.generation) > %d`, gen)),
		click(`#pause`),
		shown(`#pause[aria-pressed="true"]`),
		click(`#pause`),
		shown(`#pause[aria-pressed="false"]`),
	)

	// One race: its hold chart has a point per poll for every runner with
	// money, and the increments and pools are drawn.
	follow(t, ctx, `tr.race-row[data-race="`+race+`"] a`)
	do(t, ctx,
		shown(`#hold-chart svg circle.point`),
		shown(`#increments-chart svg rect.bar`),
		shown(`#pools-chart svg rect.bar`),
		shown(`#runners tbody tr`),
	)
	polls := eval[int](t, ctx, `Number(document.getElementById("hold-chart").dataset.polls)`)
	most := eval[int](t, ctx, `Math.max(...[...document.querySelectorAll("#hold-chart g.series")].map(g => g.querySelectorAll("circle.point").length))`)
	require.GreaterOrEqual(t, polls, 6, "polls charted")
	require.Equal(t, polls, most, "a point for each poll")
	screenshot(t, ctx, "status-race", true)

	// The plunge staged on the day's first race: its alerts are listed on
	// "/" with a link to the race, whose page lists them and marks them on
	// both charts at the poll that fired them.
	pl := f.Plunge
	require.NotEqual(t, bad, pl.RaceID, "the plunged race is not the broken one")
	steamer := fmt.Sprintf(`#day-alerts li[data-kind="steamer"] a[href="/races/%s"]`, pl.RaceID)
	do(t, ctx,
		chromedp.Navigate(srv.URL+"/"),
		shown(`#day-alerts h2`),
		until(`document.querySelector('`+steamer+`') !== null`),
	)
	label := eval[string](t, ctx, `document.querySelector('`+steamer+`').textContent`)
	require.Contains(t, label, fmt.Sprintf("#%d ", pl.Runner), "the plunged runner")
	follow(t, ctx, steamer)
	do(t, ctx,
		shown(`#alerts li[data-kind="steamer"]`),
		shown(`#hold-chart svg line.marker`),
		shown(`#increments-chart svg line.marker`),
	)
	kinds := eval[[]string](t, ctx, `[...document.querySelectorAll("#alerts li")].map(li => li.dataset.kind)`)
	require.Subset(t, kinds, []string{"steamer", "late_money", "pool_surge"}, "the plunge's alerts")
	markers := eval[[]string](t, ctx, `[...document.querySelectorAll("#hold-chart svg text.marker-label")].map(t => t.textContent)`)
	require.Contains(t, markers, fmt.Sprintf("#%d steamer", pl.Runner))
	screenshot(t, ctx, "status-race-alerts", true)

	// The pipeline: the source and the hops, with the poison queue holding
	// the broken race's messages and a link to their details.
	do(t, ctx,
		chromedp.Navigate(srv.URL+"/pipeline"),
		shown(`#flow .hop[data-hop="write"]`),
		shown(`#flow .hop[data-hop="detect"]`),
		shown(`#poison a[href^="/poison/"]`),
	)
	require.Equal(t, 7, eval[int](t, ctx, `document.querySelectorAll("#flow .hop").length`),
		"poll → fetch → transform → write → detect → result, and notify")
	screenshot(t, ctx, "status-pipeline", true)
	follow(t, ctx, `#poison a[href^="/poison/"]`)
	do(t, ctx,
		shown(`pre.payload`),
	)
	payload, err := chromedp.Run(ctx, chromedp.Text(css(`pre.payload`)))
	require.NoError(t, err)
	require.NotEmpty(t, payload)

	// A phone's width: the race page fits without scrolling sideways (wide
	// tables scroll within themselves).
	do(t, ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(srv.URL+"/races/"+race),
		shown(`#hold-chart svg circle.point`),
	)
	require.False(t, eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`), "the page is wider than a phone")
	screenshot(t, ctx, "status-race-phone", false)

	// Bad ids are answered as such by the real read model.
	for path, code := range map[string]int{
		"/races/not-a-race":                           http.StatusBadRequest,
		"/races/00000000-0000-4000-8000-000000000000": http.StatusNotFound,
	} {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, code, res.StatusCode, path)
	}
}

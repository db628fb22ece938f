package nztab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestExcerptCutsAt200BytesWithoutSplittingRunes(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", excerpt("short"))
	require.Len(t, excerpt(strings.Repeat("a", 500)), 200)
	// 199 ASCII bytes then a 3-byte rune straddling the limit: the rune goes.
	s := strings.Repeat("a", 199) + "€" + "tail"
	require.Equal(t, strings.Repeat("a", 199), excerpt(s))
}

func TestErrorMessagesAreReadable(t *testing.T) {
	t.Parallel()
	fe := &FetchError{RaceID: "r1", URL: "https://h/v1/racing/events/r1", Attempts: 4, StatusCode: 503, Temporary: true,
		Err: &StatusError{StatusCode: 503, Status: "503 Service Unavailable", BodyExcerpt: "busy"}}
	require.Equal(t, `nztab: fetch GET https://h/v1/racing/events/r1 (4 attempts, temporary): HTTP 503 Service Unavailable (body: busy)`, fe.Error())

	// An HTML error page: the query string is left out, the page shows as
	// one short line.
	page := "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <title>Error response</title>\n    </head>\n    <body>\n <h1>Error</h1>"
	html := &FetchError{RaceID: "r1", URL: "https://h/v1/racing/events/r1?with_money_tracker=true&with_will_pays=true", Attempts: 1,
		StatusCode: 404, Err: fmt.Errorf("%w: %w", ErrRaceNotFound, &StatusError{StatusCode: 404, Status: "404 Not Found", BodyExcerpt: page})}
	require.Equal(t, `nztab: fetch GET https://h/v1/racing/events/r1 (1 attempt, permanent): nztab: race not found: HTTP 404 Not Found `+
		`(body: <!DOCTYPE HTML> <html lang="en"> <head> <title>Error respons…)`, html.Error())

	bad := &FetchError{RaceID: `"r 1"`, Attempts: 0, Err: errors.New("not a race id")}
	require.Equal(t, `nztab: fetch race "r 1" (0 attempts, permanent): not a race id`, bad.Error())

	one := &FetchError{URL: "https://h/v1/racing/meetings", Attempts: 1, Err: &BodyTooLargeError{Limit: 10, ContentLength: -1}}
	require.Equal(t, "nztab: fetch GET https://h/v1/racing/meetings (1 attempt, permanent): nztab: response body exceeds limit of 10 bytes", one.Error())

	me := MeetingError{Index: 7, Err: &FieldError{Field: "date", Reason: "must be RFC3339"}}
	require.Equal(t, "data.meetings[7] (meeting <unknown>): field date: must be RFC3339", me.Error())
	var fieldErr *FieldError
	require.True(t, errors.As(&me, &fieldErr))

	de := &DecodeError{Payload: "event", Offset: -1, Err: errors.New("x")}
	require.Equal(t, "nztab: decode event: x", de.Error())
}

func TestIsTemporaryOnlyForFetchErrorsMarkedTemporary(t *testing.T) {
	t.Parallel()
	require.False(t, IsTemporary(nil))
	require.False(t, IsTemporary(errors.New("plain")))
	require.False(t, IsTemporary(&FetchError{Temporary: false}))
	require.True(t, IsTemporary(&FetchError{Temporary: true}))
	require.True(t, IsTemporary(errors.Join(errors.New("ctx"), &FetchError{Temporary: true})))
}

func TestDefaultSleepHonoursContext(t *testing.T) {
	t.Parallel()
	require.NoError(t, sleepCtx(t.Context(), 0))
	require.NoError(t, sleepCtx(t.Context(), time.Microsecond))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, sleepCtx(ctx, time.Hour), context.Canceled)
	require.ErrorIs(t, sleepCtx(ctx, 0), context.Canceled)
}

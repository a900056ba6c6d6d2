package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorsFromElsewhere: an error answer that is not s3t's error body (a proxy's 503, an HTML
// 404) gets the code of its status, so that IsNotFound and the like hold, and the body's text,
// cut, as its message; on both the JSON routes and the training event stream. It used to get the
// status text ("Service Unavailable") as its code.
func TestErrorsFromElsewhere(t *testing.T) {
	long := strings.Repeat("x", 2000)
	for _, tt := range []struct {
		name        string
		status      int
		body        string
		code, inMsg string
		notFound    bool
	}{
		{"proxy 503", http.StatusServiceUnavailable, "<html>upstream down</html>", CodeUnavailable, "upstream down", false},
		{"html 404", http.StatusNotFound, "<html>no such page</html>", CodeNotFound, "no such page", true},
		{"empty 502", http.StatusBadGateway, "", CodeInternal, "Bad Gateway", false},
		{"long body", http.StatusBadRequest, long, CodeInvalid, strings.Repeat("x", maxErrorText) + "...", false},
		{"s3t body", http.StatusConflict, `{"error":{"code":"conflict","message":"in use"}}`, CodeConflict, "in use", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := NewClient(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			_, errGet := c.GetModel(context.Background(), &GetModelRequest{Name: "m"})
			_, errWatch := c.WatchTraining(context.Background(), &GetTrainingRequest{Model: "m"}, func(*TrainingStatus) error { return nil })
			for route, err := range map[string]error{"GetModel": errGet, "WatchTraining": errWatch} {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: %v, want an *Error", route, err)
				}
				if e.Code != tt.code || e.Status != tt.status || !strings.Contains(e.Message, tt.inMsg) || len(e.Message) > maxErrorText+3 {
					t.Errorf("%s: code %q status %d message %q; want code %q status %d, message with %q", route, e.Code, e.Status, e.Message, tt.code, tt.status, tt.inMsg)
				}
				if IsNotFound(err) != tt.notFound {
					t.Errorf("%s: IsNotFound = %v, want %v", route, IsNotFound(err), tt.notFound)
				}
			}
		})
	}
}

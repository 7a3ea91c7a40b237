package mock

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The zero Created reports the Unix epoch, as Server documents; a set one
// reports itself.
func TestCreated(t *testing.T) {
	for _, tt := range []struct {
		s    *Server
		want int64
	}{
		{&Server{}, 0},
		{&Server{Created: time.Unix(1700000000, 0)}, 1700000000},
	} {
		srv := httptest.NewServer(tt.s)
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`))
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		var out struct{ Created int64 }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		srv.Close()
		if err != nil || out.Created != tt.want {
			t.Errorf("created = %d (%v), want %d", out.Created, err, tt.want)
		}
	}
}

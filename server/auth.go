package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

// Key is an API key as the server stores it: the SHA-256 of the secret, never the secret.
type Key struct {
	Name   string
	Hash   [sha256.Size]byte
	Scopes []api.Scope
}

// HashKey returns the hex SHA-256 of a secret key, the form a keys file holds.
func HashKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// ParseScopes parses a comma-separated list of scopes.
func ParseScopes(s string) ([]api.Scope, error) {
	var out []api.Scope
	for _, f := range strings.Split(s, ",") {
		sc := api.Scope(strings.TrimSpace(f))
		switch sc {
		case api.ScopeAdmin, api.ScopeTrain, api.ScopeInfer, api.ScopeDelete:
			out = append(out, sc)
		default:
			return nil, fmt.Errorf("unknown scope %q (admin, train, infer, delete)", sc)
		}
	}
	return out, nil
}

// FormatScopes writes scopes as a keys file line holds them: comma-separated, no spaces.
func FormatScopes(scopes []api.Scope) string {
	s := make([]string, len(scopes))
	for i, sc := range scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}

// LoadKeys reads a keys file: one key per line, "NAME SHA256HEX SCOPE[,SCOPE...]", with blank
// lines and lines starting with # ignored. Secrets never appear in the file (see HashKey). A
// file with no key is an error: a keys file is given to turn authentication on, and a server
// without keys allows every request.
func LoadKeys(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server: keys: %w", err)
	}
	defer f.Close()
	var keys []Key
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParseKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("server: keys %s:%d: %w", path, n, err)
		}
		// Logs and revocations name a key: two of one name could not be told apart.
		if slices.ContainsFunc(keys, func(o Key) bool { return o.Name == k.Name }) {
			return nil, fmt.Errorf("server: keys %s:%d: a key named %q is in the file already (names must differ)", path, n, k.Name)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("server: keys %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("server: keys %s: no key in the file (a server without keys allows every request; add one with s3t keys new NAME SCOPES >> %s)", path, path)
	}
	return keys, nil
}

// ParseKeyLine parses one keys-file line, "NAME SHA256HEX SCOPE[,SCOPE...]".
func ParseKeyLine(line string) (Key, error) {
	fs := strings.Fields(line)
	if len(fs) != 3 {
		return Key{}, errors.New("want NAME SHA256HEX SCOPES")
	}
	raw, err := hex.DecodeString(fs[1])
	if err != nil || len(raw) != sha256.Size {
		return Key{}, errors.New("the hash must be 64 hex digits (see HashKey)")
	}
	scopes, err := ParseScopes(fs[2])
	if err != nil {
		return Key{}, err
	}
	k := Key{Name: fs[0], Scopes: scopes}
	copy(k.Hash[:], raw)
	return k, nil
}

type authenticator struct {
	// open: no keys were configured, so every request is allowed (loopback only); fixed for the
	// server's life, whatever a reload brings.
	open bool
	// keys maps a secret's SHA-256 to its key; replaced whole by a reload (ReloadKeys).
	keys atomic.Pointer[map[[sha256.Size]byte]Key]
	// loopbackOnly is set by Server.Listen on a server with no keys: it then answers loopback
	// Host names only (see guardBrowsers).
	loopbackOnly atomic.Bool
}

func newAuthenticator(keys []Key) (*authenticator, error) {
	m, err := keyMap(keys)
	if err != nil {
		return nil, err
	}
	a := &authenticator{open: len(keys) == 0}
	a.keys.Store(&m)
	return a, nil
}

func keyMap(keys []Key) (map[[sha256.Size]byte]Key, error) {
	m := make(map[[sha256.Size]byte]Key, len(keys))
	for _, k := range keys {
		if _, dup := m[k.Hash]; dup {
			return nil, fmt.Errorf("server: key %q: the same key is configured twice", k.Name)
		}
		m[k.Hash] = k
	}
	return m, nil
}

// ReloadKeys replaces the server's API keys with keys (a keys file read again): requests from
// then on are checked against them, requests in flight keep the answer they had. A server
// started without keys allows every request on loopback, and one with keys cannot be left with
// none: both are refused, and the keys in use stay.
func (s *Server) ReloadKeys(keys []Key) error {
	if s.auth.open {
		return errors.New("server: keys: this server was started without keys (loopback only, every request allowed); restart it with --keys to turn authentication on")
	}
	if len(keys) == 0 {
		return errors.New("server: keys: no key given (a server with keys cannot be left with none)")
	}
	m, err := keyMap(keys)
	if err != nil {
		return err
	}
	s.auth.keys.Store(&m)
	return nil
}

// require checks the bearer key against scope, or orScope when set. Public routes (empty scope)
// and servers with no keys (loopback only, see Server.Listen) let every request through.
func (a *authenticator) require(scope, orScope api.Scope) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if scope == "" || a.open {
				return next(c)
			}
			secret, ok := bearerKey(c.Request().Header.Get("Authorization"))
			if !ok {
				return unauthorized(c, "missing API key (Authorization: Bearer KEY)")
			}
			k, ok := (*a.keys.Load())[sha256.Sum256([]byte(secret))]
			if !ok {
				return unauthorized(c, "unknown API key")
			}
			if !k.has(scope) && (orScope == "" || !k.has(orScope)) {
				lacks := fmt.Sprintf("scope %q", scope)
				if orScope != "" {
					lacks = fmt.Sprintf("scope %q or %q", scope, orScope)
				}
				return &statusError{status: http.StatusForbidden, body: &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("key %q lacks %s", k.Name, lacks)}}
			}
			c.Set(keyContextKey, k)
			return next(c)
		}
	}
}

// keyContextKey holds the request's authenticated Key in its echo.Context.
const keyContextKey = "s3t.key"

// has reports whether the key grants scope (admin grants every scope).
func (k Key) has(scope api.Scope) bool {
	return slices.Contains(k.Scopes, scope) || slices.Contains(k.Scopes, api.ScopeAdmin)
}

// allows reports whether the request's caller holds scope beyond its route's: always on a
// server with no keys, else when its key grants it.
func (a *authenticator) allows(c echo.Context, scope api.Scope) bool {
	if a.open {
		return true
	}
	k, ok := c.Get(keyContextKey).(Key)
	return ok && k.has(scope)
}

// unauthorized is a 401 with the challenge RFC 9110 asks of it.
func unauthorized(c echo.Context, msg string) error {
	c.Response().Header().Set("WWW-Authenticate", `Bearer realm="s3t"`)
	return &statusError{status: http.StatusUnauthorized, body: &api.Error{Code: api.CodeUnauthorized, Message: msg}}
}

// guardBrowsers refuses what a web page could make a browser send (cross-site request
// forgery): a request whose Origin is not the server's own (browsers send Origin on
// cross-origin requests, and s3t answers no CORS preflight, so no web page is meant to call
// it); and, on a server with no keys listening on loopback (Server.Listen), which answers
// every request, a Host that is not a loopback name or address (a page whose name was rebound
// to 127.0.0.1: DNS rebinding). Clients that are not browsers send no Origin, and reach
// loopback by a loopback name.
func (a *authenticator) guardBrowsers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if msg := browserRefusal(c.Request(), a.loopbackOnly.Load()); msg != "" {
			return &statusError{status: http.StatusForbidden, body: &api.Error{Code: api.CodeForbidden, Message: msg}}
		}
		return next(c)
	}
}

// browserRefusal says why a request is one a web page made a browser send (see guardBrowsers),
// or "". Browsers send Origin on cross-origin requests but not on every cross-site GET; they
// mark every request with Sec-Fetch-Site, where it names another site than the server's own.
// With loopbackOnly, the Host must be a loopback name or address.
func browserRefusal(r *http.Request, loopbackOnly bool) string {
	if origin := r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Sprintf("cross-origin request from %q refused: s3t is called by programs, not by web pages", origin)
		}
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return fmt.Sprintf("request from another site refused (Sec-Fetch-Site: %s): s3t is called by programs, not by web pages", site)
	}
	if loopbackOnly && !loopbackHost(r.Host) {
		return fmt.Sprintf("host %q refused: a server with no API keys answers loopback names and addresses only (localhost, 127.0.0.1, [::1])", r.Host)
	}
	return ""
}

// LoopbackOnly wraps a handler served on a loopback address (a profiler) with the refusals of a
// keyless server's routes: a request a web page made a browser send, or one whose Host is not
// a loopback name (a page rebound to 127.0.0.1 could read a profile, or the command line with
// its database URL).
func LoopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := browserRefusal(r, true); msg != "" {
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's loopback: localhost (or a
// name under .localhost, which resolvers keep on loopback), or a loopback address, with any port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "."), "["), "]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearerKey returns the key of an "Authorization: Bearer KEY" header value. The scheme is
// matched in any case (RFC 7235: auth schemes are case-insensitive), and the spaces or tabs
// between it and the key may be more than one.
func bearerKey(h string) (string, bool) {
	i := strings.IndexAny(h, " \t")
	if i < 0 || !strings.EqualFold(h[:i], "Bearer") {
		return "", false
	}
	key := strings.TrimLeft(h[i:], " \t")
	return key, key != ""
}

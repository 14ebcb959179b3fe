package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// MinSecretLen is the shortest admin_token and key_secret accepted.
const MinSecretLen = 16

var (
	// idPattern matches model and plan ids, and features; it is the admin
	// API's id syntax, so every configured id can be named in its paths.
	idPattern       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	keyPrefixRE     = regexp.MustCompile(`^[A-Za-z0-9_]{2,32}$`)
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
)

const idRule = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"

// Validate reports every problem in c at once (errors.Join), each prefixed
// with its location, e.g. "models[2].route: ...". Parse has already called
// it.
func (c *Config) Validate() error {
	return join(c.problems())
}

// problems collects problems in c, in the order of the file.
type problems []*fieldError

func (p *problems) add(field string, err error) {
	*p = append(*p, &fieldError{Field: field, Err: err})
}

func (p *problems) addf(field, format string, args ...any) {
	p.add(field, fmt.Errorf(format, args...))
}

func (c *Config) problems() []*fieldError {
	var p problems
	if err := checkListen(c.Listen); err != nil {
		p.add("listen", err)
	}
	store, err := ParseStore(c.Store)
	if err != nil {
		p.add("store", err)
	}
	switch {
	case c.LedgerSync != LedgerSyncCommit && c.LedgerSync != LedgerSyncBackground:
		p.addf("ledger_sync", "%q: want %s or %s", c.LedgerSync, LedgerSyncCommit, LedgerSyncBackground)
	case c.LedgerSync == LedgerSyncBackground && err == nil && store.Kind != SQLite:
		p.addf("ledger_sync", "%s is for the SQLite store's journal; on PostgreSQL, set synchronous_commit = off for the gateway's role instead", LedgerSyncBackground)
	}
	if _, err := ParseLimiter(c.Limiter); err != nil {
		p.add("limiter", err)
	}
	if c.LimiterFailure != FailOpen && c.LimiterFailure != FailClosed {
		p.addf("limiter_failure", "%q: want %s or %s", c.LimiterFailure, FailOpen, FailClosed)
	}
	if c.LimiterPrefix == "" || len(c.LimiterPrefix) > 64 || strings.ContainsAny(c.LimiterPrefix, " {}") {
		p.addf("limiter_prefix", "%q: want 1 to 64 characters without spaces or braces", c.LimiterPrefix)
	}
	p.duration("limiter_timeout", c.LimiterTimeout, false)
	if c.Replicas < 1 {
		p.addf("replicas", "%d: want at least 1", c.Replicas)
	}
	p.secret("admin_token", c.AdminToken)
	p.secret("key_secret", c.KeySecret)
	if !keyPrefixRE.MatchString(c.KeyPrefix) {
		p.addf("key_prefix", "%q: want 2 to 32 letters, digits or '_'", c.KeyPrefix)
	}
	p.duration("key_cache_ttl", c.KeyCacheTTL, false)
	p.duration("lease_ttl", c.LeaseTTL, false)
	p.duration("shutdown_grace", c.ShutdownGrace, true)
	p.duration("read_header_timeout", c.ReadHeaderTimeout, false)
	p.duration("keepalive_timeout", c.KeepaliveTimeout, false)
	p.duration("history_retention", c.HistoryRetention, false)
	p.accountPath("history_path", c.HistoryPath)
	p.accountPath("usage_path", c.UsagePath)
	if cmp.Or(c.HistoryPath, DefaultHistoryPath) == cmp.Or(c.UsagePath, DefaultUsagePath) {
		p.addf("usage_path", "%q is also history_path", c.UsagePath)
	}
	p.profile("error_profile", c.ErrorProfile, false)
	p.statuses("error_statuses", c.ErrorStatuses)
	p.messages("error_messages", c.ErrorMessages)

	models := make(map[string]int, len(c.Models))
	for i, m := range c.Models {
		firstIndex(models, m.ID, i)
	}
	var routes []route
	for i := range c.Models {
		routes = append(routes, p.model(i, &c.Models[i], models)...)
	}
	p = append(p, routeConflicts(routes, c.tollgateRoutes())...)

	plans := make(map[string]int, len(c.Plans))
	for i, pl := range c.Plans {
		firstIndex(plans, pl.ID, i)
	}
	for i := range c.Plans {
		p.plan(i, &c.Plans[i], plans, models)
	}
	return p
}

func (p *problems) model(i int, m *ModelConfig, ids map[string]int) []route {
	at := func(field string) string { return fmt.Sprintf("models[%d].%s", i, field) }
	p.id(at("id"), m.ID, ids, i, "models")
	if m.Feature != "" && !idPattern.MatchString(m.Feature) {
		p.addf(at("feature"), "%q: want %s", m.Feature, idRule)
	}

	var routes []route
	switch {
	case m.Route == "" && len(m.Routes) == 0:
		p.addf(at("route"), "required")
	case m.Route != "" && len(m.Routes) > 0:
		p.addf(at("routes"), "set route or routes, not both")
	case m.Route != "":
		if pat, err := parseRoute(m.Route); err != nil {
			p.add(at("route"), err)
		} else {
			routes = append(routes, route{at("route"), pat})
		}
	default:
		for k, r := range m.Routes {
			field := at(fmt.Sprintf("routes[%d]", k))
			if pat, err := parseRoute(r); err != nil {
				p.add(field, err)
			} else {
				routes = append(routes, route{field, pat})
			}
		}
	}

	if m.Stream != nil {
		p.stream(at, m)
	} else if u, err := parseURL(m.Upstream); err == nil && (u.Scheme == "ws" || u.Scheme == "wss") {
		// Located at stream, so that a stream block that failed to
		// decode does not also report this.
		p.addf(at("stream"), "required with a ws:// or wss:// upstream")
	} else if err := checkUpstream(m.Upstream); err != nil {
		p.add(at("upstream"), err)
	}
	if m.UpstreamPath != "" && !strings.HasPrefix(m.UpstreamPath, "/") {
		p.addf(at("upstream_path"), "%q must start with /", m.UpstreamPath)
	}
	p.duration(at("timeout"), m.Timeout, true)
	seen := make(map[string]bool, len(m.Fallbacks))
	for k, f := range m.Fallbacks {
		field := at(fmt.Sprintf("fallbacks[%d]", k))
		_, known := ids[f]
		switch {
		case f == m.ID:
			p.addf(field, "model %q falls back to itself", f)
		case !known:
			p.addf(field, "unknown model %q", f)
		case seen[f]:
			p.addf(field, "model %q is listed twice", f)
		}
		seen[f] = true
	}
	p.profile(at("error_profile"), m.ErrorProfile, true)
	p.statuses(at("error_statuses"), m.ErrorStatuses)
	p.messages(at("error_messages"), m.ErrorMessages)
	p.input(at, m.Input)
	if mt := m.Meter; mt != nil && m.Stream == nil {
		if mt.Unit != "" && !tollgate.ValidUnit(tollgate.Unit(mt.Unit)) {
			p.addf(at("meter.unit"), "%q: want requests, audio_seconds or characters", mt.Unit)
		}
		if mt.Price < 0 {
			p.addf(at("meter.price"), "must be >= 0")
		}
		if tollgate.Unit(mt.Unit) == tollgate.UnitAudioSeconds && (m.Input == nil || m.Input.Audio == nil) && !mt.TrustUpstream {
			p.addf(at("meter.unit"), "audio_seconds needs input.audio (the duration is measured from the upload) or trust_upstream")
		}
		if tollgate.Unit(mt.Unit) == tollgate.UnitCharacters && (m.Input == nil || m.Input.TextField == "") && !mt.TrustUpstream {
			p.addf(at("meter.unit"), "characters needs input.text_field (the text that is counted) or trust_upstream")
		}
	}
	switch tollgate.Code(m.UpstreamErrorCode) {
	case "", tollgate.CodeUpstreamError, tollgate.CodeGRPCError:
	default:
		p.addf(at("upstream_error_code"), "%q: want %s or %s", m.UpstreamErrorCode, tollgate.CodeUpstreamError, tollgate.CodeGRPCError)
	}
	return routes
}

func (p *problems) plan(i int, pl *PlanConfig, ids, models map[string]int) {
	at := func(field string) string { return fmt.Sprintf("plans[%d].%s", i, field) }
	p.id(at("id"), pl.ID, ids, i, "plans")
	if pl.RPM <= 0 {
		p.addf(at("rpm"), "%d: must be positive", pl.RPM)
	}
	if pl.Concurrency < 0 {
		p.addf(at("concurrency"), "%d: must be 0 (unlimited) or more", pl.Concurrency)
	}
	for _, model := range sortedKeys(pl.ModelConcurrency) {
		field := at(fmt.Sprintf("model_concurrency[%s]", model))
		if _, ok := models[model]; !ok {
			p.addf(field, "unknown model %q", model)
		}
		if n := pl.ModelConcurrency[model]; n < 0 {
			p.addf(field, "%d: must be 0 (unlimited) or more", n)
		}
	}
	for k, f := range pl.Features {
		if f != "*" && !idPattern.MatchString(f) {
			p.addf(at(fmt.Sprintf("features[%d]", k)), "%q: want \"*\" or %s", f, idRule)
		}
	}
	if pl.FreeCredits < 0 {
		p.addf(at("free_credits"), "must be >= 0")
	}
	if pl.MonthlyCreditCap < 0 {
		p.addf(at("monthly_credit_cap"), "must be >= 0 (0 = none)")
	}
	for _, model := range sortedKeys(pl.MonthlyLimits) {
		field := at(fmt.Sprintf("monthly_limits[%s]", model))
		if _, ok := models[model]; !ok {
			p.addf(field, "unknown model %q", model)
		}
		if n := pl.MonthlyLimits[model]; n < 0 {
			p.addf(field, "must be >= 0 (0 = none)")
		}
	}
}

// firstIndex records i as id's index unless id is empty or already seen.
func firstIndex(ids map[string]int, id string, i int) {
	if _, seen := ids[id]; !seen && id != "" {
		ids[id] = i
	}
}

// id checks the id of item i of a list; ids maps each id to the first item
// holding it.
func (p *problems) id(field, id string, ids map[string]int, i int, list string) {
	switch first, seen := ids[id]; {
	case id == "":
		p.addf(field, "required")
	case !idPattern.MatchString(id):
		p.addf(field, "%q: want %s", id, idRule)
	case seen && first != i:
		p.addf(field, "duplicate id %q (also %s[%d])", id, list, first)
	}
}

func (p *problems) secret(field, s string) {
	switch {
	case s == "":
		p.addf(field, "required")
	case len(s) < MinSecretLen:
		p.addf(field, "too short: %d bytes, want at least %d", len(s), MinSecretLen)
	}
}

func (p *problems) duration(field string, d time.Duration, zeroOK bool) {
	switch {
	case d < 0:
		p.addf(field, "%s: must not be negative", d)
	case d == 0 && !zeroOK:
		p.addf(field, "must be positive")
	}
}

// accountPath checks a path the account API serves at: a fixed path (no
// wildcards) outside tollgate's reserved ones; empty is the default.
func (p *problems) accountPath(field, path string) {
	switch {
	case path == "":
	case !strings.HasPrefix(path, "/") || path == "/":
		p.addf(field, "%q: want a path such as /v1/history", path)
	case strings.HasSuffix(path, "/"):
		p.addf(field, "%q: must not end with /", path)
	case strings.ContainsAny(path, "{} \t?#%"):
		p.addf(field, "%q: want a fixed path, without wildcards, spaces, a query or escapes", path)
	default:
		if _, err := parseRoute("GET " + path); err != nil {
			p.addf(field, "%v", err)
		}
	}
}

func (p *problems) profile(field, name string, emptyOK bool) {
	if (name == "" && emptyOK) || tollgate.ValidProfile(name) {
		return
	}
	p.addf(field, "unknown profile %q (want %s)", name, strings.Join(tollgate.ProfileNames, ", "))
}

func (p *problems) statuses(field string, m map[string]int) {
	errs := tollgate.ValidateStatuses(codes(m))
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	for _, err := range errs {
		p.add(field, err)
	}
}

func (p *problems) messages(field string, m map[string]string) {
	errs := tollgate.ValidateMessages(messages(m))
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	for _, err := range errs {
		p.add(field, err)
	}
}

func checkListen(addr string) error {
	if addr == "" {
		return errors.New("required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil && (len(host) > 253 || !hostnamePattern.MatchString(host)) {
		return fmt.Errorf("host %q is not an IP address or a host name", host)
	}
	return nil
}

func checkUpstream(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := parseURL(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http:// or https:// URL")
	}
	if u.Fragment != "" || u.RawQuery != "" {
		return errors.New("want a base URL without query or fragment")
	}
	return nil
}

// codes converts a config status map to the domain's.
func codes(m map[string]int) map[tollgate.Code]int {
	if m == nil {
		return nil
	}
	out := make(map[tollgate.Code]int, len(m))
	for c, s := range m {
		out[tollgate.Code(c)] = s
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

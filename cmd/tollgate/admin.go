package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The admin CLI talks to a running gateway's admin API, so every change
// goes through the same validation and reaches the gateway's key cache at
// once. --server and --admin-token default to TOLLGATE_SERVER and
// TOLLGATE_ADMIN_TOKEN.

type adminClient struct {
	server, token string
	out           io.Writer
	http          *http.Client
}

func (c *adminClient) do(method, path string, body any) error {
	raw, err := c.call(method, path, body)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(raw)
	}
	fmt.Fprintln(c.out, strings.TrimSpace(pretty.String()))
	return nil
}

// call sends one admin request and returns the answer's body, or an error
// made of the API's error (its message, status, code and details).
func (c *adminClient) call(method, path string, body any) ([]byte, error) {
	if c.token == "" {
		return nil, fmt.Errorf("no admin token: pass --admin-token or set TOLLGATE_ADMIN_TOKEN")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error   string         `json:"error"`
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Code != "" {
			if len(e.Details) > 0 {
				d, _ := json.Marshal(e.Details)
				return nil, fmt.Errorf("%s (%d %s) %s", e.Error, resp.StatusCode, e.Code, d)
			}
			return nil, fmt.Errorf("%s (%d %s)", e.Error, resp.StatusCode, e.Code)
		}
		return nil, fmt.Errorf("admin API answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	return raw, nil
}

func addAdminCmds(root *cobra.Command, stdout io.Writer, environ []string) {
	c := &adminClient{out: stdout, http: &http.Client{Timeout: 30 * time.Second}}
	server := lookupEnv(environ, "TOLLGATE_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	root.PersistentFlags().StringVar(&c.server, "server", server, "gateway base URL for admin commands (TOLLGATE_SERVER)")
	root.PersistentFlags().StringVar(&c.token, "admin-token", lookupEnv(environ, "TOLLGATE_ADMIN_TOKEN"), "admin token (TOLLGATE_ADMIN_TOKEN)")
	p := url.PathEscape

	// plan
	plan := &cobra.Command{Use: "plan", Short: "Manage plans (rpm, concurrency, features)"}
	plan.AddCommand(&cobra.Command{Use: "list", Short: "List plans", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return c.do("GET", "/admin/plans", nil) }})
	var planRPM, planConc int
	var planFeatures []string
	var planModelConc map[string]int
	var planBillingRequired bool
	var planFreeCredits, planCreditCap float64
	var planMonthly map[string]string
	planPut := &cobra.Command{Use: "put ID", Short: "Create or replace a plan (every setting: flags left out take their default)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			limits := map[string]float64{}
			for m, v := range planMonthly {
				var n float64
				if _, err := fmt.Sscan(v, &n); err != nil {
					return fmt.Errorf("--monthly-limit %s=%s: not a number", m, v)
				}
				limits[m] = n
			}
			return c.do("PUT", "/admin/plans/"+p(a[0]), map[string]any{"rpm": planRPM, "concurrency": planConc,
				"features": planFeatures, "model_concurrency": planModelConc,
				"billing_required": planBillingRequired, "free_credits": planFreeCredits, "monthly_credit_cap": planCreditCap,
				"monthly_limits": limits})
		}}
	planPut.Flags().IntVar(&planRPM, "rpm", 0, "requests per minute per key")
	planPut.Flags().IntVar(&planConc, "concurrency", 0, "default in-flight limit per org × model (0 = unlimited)")
	planPut.Flags().StringSliceVar(&planFeatures, "features", nil, "features included (* = all)")
	planPut.Flags().StringToIntVar(&planModelConc, "model-concurrency", nil, "per-model in-flight limits, e.g. stt=2")
	planPut.Flags().BoolVar(&planBillingRequired, "billing-required", false, "orgs without billing draw on free credits, then get billing_required")
	planPut.Flags().Float64Var(&planFreeCredits, "free-credits", 0, "one-time free credits")
	planPut.Flags().Float64Var(&planCreditCap, "monthly-credit-cap", 0, "credits per org per month (0 = none)")
	planPut.Flags().StringToStringVar(&planMonthly, "monthly-limit", nil, "units per org per month per model, e.g. stt=360000")
	plan.AddCommand(planPut)

	// org
	org := &cobra.Command{Use: "org", Short: "Manage organizations"}
	org.AddCommand(&cobra.Command{Use: "list", Short: "List orgs", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return c.do("GET", "/admin/orgs", nil) }})
	org.AddCommand(&cobra.Command{Use: "show ID", Short: "Show one org", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error { return c.do("GET", "/admin/orgs/"+p(a[0]), nil) }})
	var orgID, orgName, orgPlan string
	var orgModels []string
	orgCreate := &cobra.Command{Use: "create", Short: "Create an org", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return c.do("POST", "/admin/orgs", map[string]any{"id": orgID, "name": orgName, "plan": orgPlan, "models": orgModels})
		}}
	orgCreate.Flags().StringVar(&orgID, "id", "", "org id (generated when empty)")
	orgCreate.Flags().StringVar(&orgName, "name", "", "display name")
	orgCreate.Flags().StringVar(&orgPlan, "plan", "", "plan id")
	orgCreate.Flags().StringSliceVar(&orgModels, "models", nil, "models to grant at once")
	org.AddCommand(orgCreate)
	org.AddCommand(&cobra.Command{Use: "set-plan ORG PLAN", Short: "Move an org to another plan", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("PUT", "/admin/orgs/"+p(a[0])+"/plan", map[string]any{"plan": a[1]})
		}})

	// grant
	grant := &cobra.Command{Use: "grant", Short: "Enable or disable models for an org"}
	grant.AddCommand(&cobra.Command{Use: "list ORG", Args: cobra.ExactArgs(1), Short: "List an org's models",
		RunE: func(_ *cobra.Command, a []string) error { return c.do("GET", "/admin/orgs/"+p(a[0])+"/models", nil) }})
	grant.AddCommand(&cobra.Command{Use: "add ORG MODEL", Args: cobra.ExactArgs(2), Short: "Enable a model",
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("PUT", "/admin/orgs/"+p(a[0])+"/models/"+p(a[1]), nil)
		}})
	grant.AddCommand(&cobra.Command{Use: "remove ORG MODEL", Args: cobra.ExactArgs(2), Short: "Disable a model",
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("DELETE", "/admin/orgs/"+p(a[0])+"/models/"+p(a[1]), nil)
		}})

	// concurrency
	conc := &cobra.Command{Use: "concurrency", Short: "Per-org × model in-flight overrides"}
	conc.AddCommand(&cobra.Command{Use: "list ORG", Args: cobra.ExactArgs(1), Short: "Show overrides and effective limits",
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("GET", "/admin/orgs/"+p(a[0])+"/concurrency", nil)
		}})
	conc.AddCommand(&cobra.Command{Use: "set ORG MODEL LIMIT", Args: cobra.ExactArgs(3), Short: "Set an override",
		RunE: func(_ *cobra.Command, a []string) error {
			var n int
			if _, err := fmt.Sscan(a[2], &n); err != nil {
				return fmt.Errorf("LIMIT %q is not a number", a[2])
			}
			return c.do("PUT", "/admin/orgs/"+p(a[0])+"/concurrency/"+p(a[1]), map[string]any{"limit": n})
		}})
	conc.AddCommand(&cobra.Command{Use: "clear ORG MODEL", Args: cobra.ExactArgs(2), Short: "Remove an override",
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("DELETE", "/admin/orgs/"+p(a[0])+"/concurrency/"+p(a[1]), nil)
		}})

	// key
	key := &cobra.Command{Use: "key", Short: "Create, list, revoke and rotate API keys"}
	var keyOrg, keyName, keyExpires string
	var keyModels, keyScopes []string
	var keyRPM int
	keyCreate := &cobra.Command{Use: "create", Short: "Create a key (printed once; settings are fixed)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return c.do("POST", "/admin/orgs/"+p(keyOrg)+"/keys", map[string]any{"name": keyName, "models": keyModels,
				"rpm": keyRPM, "scopes": keyScopes, "expires_in": keyExpires})
		}}
	keyCreate.Flags().StringVar(&keyOrg, "org", "", "org id")
	keyCreate.Flags().StringVar(&keyName, "name", "", "key name, unique among the org's active keys")
	keyCreate.Flags().StringSliceVar(&keyModels, "models", nil, "restrict the key to these models")
	keyCreate.Flags().IntVar(&keyRPM, "rpm", 0, "requests per minute (≤ the plan's; 0 = the plan's)")
	keyCreate.Flags().StringSliceVar(&keyScopes, "scopes", nil, "scopes")
	keyCreate.Flags().StringVar(&keyExpires, "expires-in", "", "lifetime, e.g. 720h (default: never)")
	keyCreate.MarkFlagRequired("org")
	keyCreate.MarkFlagRequired("name")
	key.AddCommand(keyCreate)
	var listOrg string
	keyList := &cobra.Command{Use: "list", Short: "List an org's keys (never the keys themselves)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return c.do("GET", "/admin/orgs/"+p(listOrg)+"/keys", nil) }}
	keyList.Flags().StringVar(&listOrg, "org", "", "org id")
	keyList.MarkFlagRequired("org")
	key.AddCommand(keyList)
	key.AddCommand(&cobra.Command{Use: "revoke KEY_ID", Short: "Revoke a key now", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error { return c.do("POST", "/admin/keys/"+p(a[0])+"/revoke", nil) }})
	var overlap string
	keyRotate := &cobra.Command{Use: "rotate KEY_ID", Short: "New key with the same settings; the old one expires after --overlap", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			return c.do("POST", "/admin/keys/"+p(a[0])+"/rotate", map[string]any{"overlap": overlap})
		}}
	keyRotate.Flags().StringVar(&overlap, "overlap", "24h", "how long the old key keeps working")
	key.AddCommand(keyRotate)
	key.AddCommand(newKeyImportCmd(c))

	// billing and usage
	var billActive bool
	var billLimit float64
	var billModelLimits map[string]string
	orgBilling := &cobra.Command{Use: "billing ORG", Short: "Set an org's billing: active, monthly credit limit, per-model monthly limits (flags not given keep their value)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			// Read, change what the flags say, write back: a flag left
			// out keeps the org's setting.
			raw, err := c.call("GET", "/admin/orgs/"+p(a[0]), nil)
			if err != nil {
				return err
			}
			var cur struct {
				Billing struct {
					Active             bool               `json:"active"`
					MonthlyCreditLimit float64            `json:"monthly_credit_limit"`
					MonthlyLimits      map[string]float64 `json:"monthly_limits"`
				} `json:"billing"`
			}
			if err := json.Unmarshal(raw, &cur); err != nil {
				return fmt.Errorf("read org %s: %w", a[0], err)
			}
			b := cur.Billing
			if b.MonthlyLimits == nil {
				b.MonthlyLimits = map[string]float64{}
			}
			f := cmd.Flags()
			if f.Changed("active") {
				b.Active = billActive
			}
			if f.Changed("monthly-credit-limit") {
				b.MonthlyCreditLimit = billLimit
			}
			for m, v := range billModelLimits {
				var n float64
				if _, err := fmt.Sscan(v, &n); err != nil {
					return fmt.Errorf("--monthly-limit %s=%s: not a number", m, v)
				}
				b.MonthlyLimits[m] = n
			}
			return c.do("PUT", "/admin/orgs/"+p(a[0])+"/billing", map[string]any{"active": b.Active,
				"monthly_credit_limit": b.MonthlyCreditLimit, "monthly_limits": b.MonthlyLimits})
		}}
	orgBilling.Flags().BoolVar(&billActive, "active", false, "billing is set up (charges no longer draw on free credits)")
	orgBilling.Flags().Float64Var(&billLimit, "monthly-credit-limit", 0, "credits per month (0 = the plan's cap)")
	orgBilling.Flags().StringToStringVar(&billModelLimits, "monthly-limit", nil, "units per month per model, e.g. stt=360000; replaces the plan's for that model (0: no limit)")
	org.AddCommand(orgBilling)

	usage := &cobra.Command{Use: "usage", Short: "Show an org's usage and balance, or rebuild the counters from the ledger"}
	var usageOrg, usageFrom, usageTo, usageGroup string
	usageShow := &cobra.Command{Use: "show", Short: "An org's usage by day or model, and its balance", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"from": usageFrom, "to": usageTo, "group_by": usageGroup} {
				if v != "" {
					q.Set(k, v)
				}
			}
			path := "/admin/orgs/" + p(usageOrg) + "/usage"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			return c.do("GET", path, nil)
		}}
	usageShow.Flags().StringVar(&usageOrg, "org", "", "org id")
	usageShow.Flags().StringVar(&usageFrom, "from", "", "start (2026-11-01 or RFC 3339; default: this month)")
	usageShow.Flags().StringVar(&usageTo, "to", "", "end, exclusive (default: now)")
	usageShow.Flags().StringVar(&usageGroup, "group-by", "day", "day or model")
	usageShow.MarkFlagRequired("org")
	usage.AddCommand(usageShow)
	usage.AddCommand(&cobra.Command{Use: "rebuild", Short: "Rebuild the quota counters from the ledger (the gateway also does it at start)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return c.do("POST", "/admin/usage/rebuild", nil) }})

	root.AddCommand(plan, org, grant, conc, key, usage)
}

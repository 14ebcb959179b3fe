package config

import (
	"maps"
	"slices"

	"github.com/tollgate/tollgate"
)

// DomainModels returns one tollgate.Model per route of every model, in
// file order; a model with several routes yields several Models sharing its
// id. Call it on a valid Config.
func (c *Config) DomainModels() []*tollgate.Model {
	var out []*tollgate.Model
	for i := range c.Models {
		m := &c.Models[i]
		code := tollgate.Code(m.UpstreamErrorCode)
		if code == "" {
			code = tollgate.CodeUpstreamError
		}
		for _, r := range m.patterns() {
			method, path, _ := splitRoute(r)
			out = append(out, &tollgate.Model{
				ID:                m.ID,
				Feature:           m.Feature,
				Method:            method,
				Path:              path,
				Upstream:          m.Upstream,
				UpstreamPath:      m.UpstreamPath,
				Timeout:           m.Timeout,
				Fallbacks:         slices.Clone(m.Fallbacks),
				Profile:           m.ErrorProfile,
				Statuses:          codes(m.ErrorStatuses),
				Messages:          messages(m.ErrorMessages),
				UpstreamErrorCode: code,
				Input:             domainInput(m.Input),
				Meter:             domainMeter(m.Meter, m.Stream != nil),
				Stream:            domainStream(m.Stream),
			})
		}
	}
	return out
}

// DomainPlans returns the plans, in file order.
func (c *Config) DomainPlans() []*tollgate.Plan {
	out := make([]*tollgate.Plan, 0, len(c.Plans))
	for _, p := range c.Plans {
		out = append(out, &tollgate.Plan{
			ID:               p.ID,
			RPM:              p.RPM,
			Concurrency:      p.Concurrency,
			ModelConcurrency: maps.Clone(p.ModelConcurrency),
			Features:         slices.Clone(p.Features),
			BillingRequired:  p.BillingRequired,
			FreeCredits:      p.FreeCredits,
			MonthlyCreditCap: p.MonthlyCreditCap,
			MonthlyLimits:    maps.Clone(p.MonthlyLimits),
		})
	}
	return out
}

// Profile returns the deployment's error profile with its status remaps.
// A model's own profile is Profile().WithOverrides(m.Profile, m.Statuses).
func (c *Config) Profile() tollgate.Profile {
	return tollgate.Profile{Name: c.ErrorProfile, Statuses: codes(c.ErrorStatuses), Messages: messages(c.ErrorMessages)}
}

// messages converts message overrides to catalog codes (nil when empty).
func messages(m map[string]string) map[tollgate.Code]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[tollgate.Code]string, len(m))
	for c, msg := range m {
		out[tollgate.Code(c)] = msg
	}
	return out
}

// domainMeter converts a valid meter; a stream always meters
// audio_seconds.
func domainMeter(m *MeterConfig, stream bool) tollgate.Meter {
	var out tollgate.Meter
	if m != nil {
		out = tollgate.Meter{Unit: tollgate.Unit(m.Unit), Price: m.Price, TrustUpstream: m.TrustUpstream}
	}
	if stream {
		out.Unit = tollgate.UnitAudioSeconds
	}
	return out
}

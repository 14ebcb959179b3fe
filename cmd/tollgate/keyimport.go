package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/httpapi"
)

// newKeyImportCmd is `tollgate key import`: existing keys (another API's,
// which its customers keep) into an org, through POST
// /admin/orgs/{id}/keys/import.
func newKeyImportCmd(c *adminClient) *cobra.Command {
	var (
		org, name, key, hash, scheme, prefix, file string
		expiresIn, expiresAt, createdAt            string
		models, scopes                             []string
		rpm                                        int
		checksum                                   bool
	)
	cmd := &cobra.Command{
		Use:   "import --org ORG (--name N (--key KEY | --hash HEX --scheme sha256|hmac-sha256) | --file FILE)",
		Short: "Import existing keys: plaintext (stored as an HMAC) or the SHA-256/HMAC hash the old API kept",
		Long: `Import keys that existed before tollgate, with their settings, so their holders keep them.

One key: --name and either --key (the plaintext; "-" reads it from stdin, keeping it out
of the shell history) or --hash (hex) with --scheme: sha256 (the plain SHA-256 the old API
stored) or hmac-sha256 (HMAC-SHA-256 under this deployment's key_secret).

Many keys: --file, a JSON array or JSON lines ("-" for stdin), each entry an object with the
API's fields: name, key | hash + scheme, prefix, checksum, models, rpm, scopes,
expires_at | expires_in, created_at. Lines that are empty or start with # are skipped.
They are sent in batches of ` + fmt.Sprint(httpapi.MaxKeyImport) + `, each stored all or none; the first failing batch
stops the import and is reported with the entries it covered.

Keys without tollgate's checksum are accepted by a store lookup (see docs/configuration.md,
"Imported keys"); rotating such a key issues a tollgate key with the same settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/admin/orgs/" + url.PathEscape(org) + "/keys/import"
			if file != "" {
				for _, f := range []string{"name", "key", "hash", "scheme", "prefix", "checksum", "models", "rpm", "scopes", "expires-in", "expires-at", "created-at"} {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("--%s: with --file, every setting comes from the file's entries", f)
					}
				}
				entries, err := readKeyImports(cmd.InOrStdin(), file)
				if err != nil {
					return err
				}
				return importBatches(c, path, entries)
			}
			if name == "" {
				return errors.New("--name is required (or --file)")
			}
			e := map[string]any{"name": name, "models": models, "rpm": rpm, "scopes": scopes}
			switch {
			case key != "" && hash != "":
				return errors.New("give --key or --hash, not both")
			case key == "-":
				k, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the key from stdin: %w", err)
				}
				e["key"] = strings.TrimSpace(k)
			case key != "":
				e["key"] = key
			case hash != "":
				e["hash"], e["scheme"], e["prefix"], e["checksum"] = strings.ToLower(hash), scheme, prefix, checksum
			default:
				return errors.New("give --key KEY (or --key - for stdin), --hash HEX --scheme SCHEME, or --file FILE")
			}
			for k, v := range map[string]string{"expires_in": expiresIn, "expires_at": expiresAt, "created_at": createdAt} {
				if v != "" {
					e[k] = v
				}
			}
			return c.do("POST", path, map[string]any{"keys": []any{e}})
		},
	}
	f := cmd.Flags()
	f.StringVar(&org, "org", "", "org id")
	f.StringVar(&name, "name", "", "key name, unique among the org's active keys")
	f.StringVar(&key, "key", "", `the plaintext key ("-": read it from stdin)`)
	f.StringVar(&hash, "hash", "", "the key's hash, hexadecimal")
	f.StringVar(&scheme, "scheme", "", "what --hash is: sha256 or hmac-sha256 (under this deployment's key_secret)")
	f.StringVar(&prefix, "prefix", "", "what listings show of a hash-imported key, e.g. origin_sk_")
	f.BoolVar(&checksum, "checksum", false, "the hash-imported key carries tollgate's checksum for this deployment's key_prefix")
	f.StringSliceVar(&models, "models", nil, "restrict the key to these models")
	f.IntVar(&rpm, "rpm", 0, "requests per minute (≤ the plan's; 0 = the plan's)")
	f.StringSliceVar(&scopes, "scopes", nil, "scopes")
	f.StringVar(&expiresIn, "expires-in", "", "lifetime from now, e.g. 720h (default: never)")
	f.StringVar(&expiresAt, "expires-at", "", "expiry, RFC 3339")
	f.StringVar(&createdAt, "created-at", "", "the key's original creation time, RFC 3339 (default: now)")
	f.StringVar(&file, "file", "", `JSON array or JSON lines of keys to import ("-": stdin)`)
	cmd.MarkFlagRequired("org")
	return cmd
}

// keyImportEntry is one entry of an import file and where it was.
type keyImportEntry struct {
	line  int
	entry json.RawMessage
}

// readKeyImports reads a JSON array or JSON lines of import entries.
func readKeyImports(stdin io.Reader, path string) ([]keyImportEntry, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	var out []keyImportEntry
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of objects: %w", path, err)
		}
		for i, e := range list {
			out = append(out, keyImportEntry{line: i + 1, entry: e})
		}
	} else {
		for i, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			if !json.Valid(line) || line[0] != '{' {
				return nil, fmt.Errorf("%s:%d: not a JSON object", path, i+1)
			}
			out = append(out, keyImportEntry{line: i + 1, entry: line})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no keys to import", path)
	}
	return out, nil
}

// importBatches sends entries in batches and reports how far it got.
func importBatches(c *adminClient, path string, entries []keyImportEntry) error {
	imported := 0
	for start := 0; start < len(entries); start += httpapi.MaxKeyImport {
		batch := entries[start:min(start+httpapi.MaxKeyImport, len(entries))]
		keys := make([]json.RawMessage, len(batch))
		for i, e := range batch {
			keys[i] = e.entry
		}
		if _, err := c.call("POST", path, map[string]any{"keys": keys}); err != nil {
			return fmt.Errorf("imported %d of %d keys; the batch of entries %d to %d (keys[0] is entry %d) was refused, nothing of it stored: %w",
				imported, len(entries), batch[0].line, batch[len(batch)-1].line, batch[0].line, err)
		}
		imported += len(batch)
	}
	fmt.Fprintf(c.out, "imported %d keys\n", imported)
	return nil
}

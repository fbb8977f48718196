// Command sessionkit is the operator's tool for the sessions a sessionkit
// Manager keeps: count them, list them (all, or one user's), show one, and
// revoke one, a user's, or all of them.
//
//	sessionkit -store redis://127.0.0.1:6379/0 count
//	sessionkit -store redis://127.0.0.1:6379/0 ls -user ana
//	sessionkit -store redis://127.0.0.1:6379/0 revoke -user ana -except 3q2-…
//
// Run it with no arguments for the full usage, exit codes included.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/storeurl"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usageText = `usage: sessionkit [-store URL] [-prefix P] [-timeout D] COMMAND [ARGS]

Commands:
  count                       print the number of live sessions
  ls [-user U] [-json]        list live sessions: log ID, public ID, user,
                              device, created, last seen, expires
                              (without -user: every session, page by page)
  show [-meta] ID             show one session, named by its public ID or
                              its log ID, with its fields decoded as JSON.
                              Reading the fields is a use of the session:
                              its idle timeout restarts (never past its
                              absolute lifetime). -meta prints only what the
                              store keeps about it and leaves it untouched.
  revoke ID                   end one session (public ID or log ID)
  revoke -user U [-except ID] end every session of user U, but the one with
                              public ID (or log ID) ID
  revoke -all [-yes]          end every session under the prefix (log
                              everyone out); asks for "yes" on stdin unless
                              -yes is given

Global flags (before or after the command):
  -store URL    the session store, as storeurl opens it (default
                $SESSIONKIT_STORE): redis://, rediss://, redis+cluster://,
                postgres://, bbolt:// (stop the process that holds the file
                first: a bbolt file belongs to one process), memcached://
                (keeps no user index: ls -user and revoke -user fail; the
                others walk every item, with the server's lru_crawler),
                memory:// (in-process: always empty)
  -prefix P     the Manager's Options.KeyPrefix (default "session:")
  -timeout D    give up after D (default 1m). The store's client waits up
                to D for each reply too (one revoke may take a while),
                unless the URL sets that timeout itself: read_timeout and
                write_timeout (redis), timeout (memcached, postgres)

Environment: SESSIONKIT_USER_HASH_KEY must hold the application's
Options.UserHashKey when it sets one (an environment variable, not a flag,
so that it never shows in a process list): without it, ls -user and
revoke -user find no session of the user.

IDs: a session's public ID is the one users see in their list of sessions;
its log ID is the 16 hex digits that sessionkit logs and events carry.

Exit status: 0 done; 1 failed (the store, a session or user not found, a
store that cannot do it, revocation not confirmed); 2 bad command line.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// openStore opens a store URL; tests replace it to share one in-process
// store between the test and the command.
var openStore = storeurl.Open

// usageError is a mistake on the command line: exit status 2.
type usageError struct {
	msg  string
	full bool // print the whole usage text
}

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{msg: fmt.Sprintf(format, a...)} }

// globals are the flags every command takes.
type globals struct {
	store, prefix string
	timeout       time.Duration
	userHashKey   []byte // $SESSIONKIT_USER_HASH_KEY: the application's Options.UserHashKey
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.store, "store", g.store, "session store URL")
	fs.StringVar(&g.prefix, "prefix", g.prefix, "the Manager's key prefix")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "give up after this long")
}

// run is the whole command: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{store: os.Getenv("SESSIONKIT_STORE"), prefix: sessionkit.DefaultKeyPrefix, timeout: time.Minute,
		userHashKey: []byte(os.Getenv("SESSIONKIT_USER_HASH_KEY"))}
	err := dispatch(ctx, g, args, stdin, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return exitOK
	case errors.As(err, &ue) && ue.full:
		fmt.Fprintf(stderr, "sessionkit: %s\n\n%s", ue.msg, usageText)
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sessionkit: %s\n%sRun sessionkit -h for the commands and exit codes.\n", ue.msg, usageText[:strings.Index(usageText, "\n")+1])
		return exitUsage
	default:
		fmt.Fprintf(stderr, "sessionkit: %s\n", err)
		return exitFailure
	}
}

// parse parses args into fs, allowing flags after positional arguments
// ("revoke ID -yes"), and returns the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	args, restore := protectIDs(fs, args)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{msg: err.Error()}
		}
		if fs.NArg() == 0 {
			return restore(pos), nil
		}
		rest := fs.Args()
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return restore(append(pos, rest...)), nil // after "--", everything is positional
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// protectIDs hides from the flag package the arguments shaped like a public
// ID that start with "-" (base64url: one ID in 64 does) and name no flag,
// unless they are the value of the flag before them. It returns the
// arguments with each replaced by a placeholder, and a function that puts
// them back in a list of positional arguments.
func protectIDs(fs *flag.FlagSet, args []string) ([]string, func([]string) []string) {
	var hidden []string
	out := slices.Clone(args)
	for i, a := range args {
		if !strings.HasPrefix(a, "-") || !publicIDShaped(a) || fs.Lookup(strings.TrimLeft(a, "-")) != nil {
			continue
		}
		if i > 0 && takesValue(fs, args[i-1]) {
			continue // "-except -abc…": the flag's value
		}
		out[i] = fmt.Sprintf("\x00id%d", len(hidden))
		hidden = append(hidden, a)
	}
	return out, func(pos []string) []string {
		for i, p := range pos {
			var n int
			if _, err := fmt.Sscanf(p, "\x00id%d", &n); err == nil && n < len(hidden) {
				pos[i] = hidden[n]
			}
		}
		return pos
	}
}

// takesValue reports whether arg is a flag of fs whose value is the next
// argument (a non-boolean flag written without "=").
func takesValue(fs *flag.FlagSet, arg string) bool {
	if !strings.HasPrefix(arg, "-") || strings.Contains(arg, "=") {
		return false
	}
	f := fs.Lookup(strings.TrimLeft(arg, "-"))
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// publicIDShaped reports whether s has the shape of a public session ID:
// 22 characters of unpadded base64url (128 bits).
func publicIDShaped(s string) bool {
	if len(s) != 22 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func dispatch(ctx context.Context, g *globals, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	top := flag.NewFlagSet("sessionkit", flag.ContinueOnError)
	g.register(top)
	top.SetOutput(io.Discard)
	top.Usage = func() {}
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{msg: err.Error()}
	}
	if top.NArg() == 0 {
		return usageError{msg: "no command", full: true}
	}
	name, args := top.Arg(0), top.Args()[1:]
	if name == "help" {
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	g.register(fs)
	var c command
	switch name {
	case "count":
		c = &countCmd{}
	case "ls", "list":
		c = &lsCmd{}
	case "show":
		c = &showCmd{}
	case "revoke":
		c = &revokeCmd{}
	default:
		return usagef("unknown command %q", name)
	}
	c.flags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	// An empty value given on purpose ("-user ''", or "-user $U" with U
	// unset) is a mistake, not the flag's default.
	set := map[string]bool{}
	for _, f := range []*flag.FlagSet{top, fs} {
		f.Visit(func(f *flag.Flag) { set[f.Name] = true })
	}
	if set["prefix"] && g.prefix == "" {
		return usagef("empty -prefix: give the Manager's Options.KeyPrefix, or leave -prefix out for %q", sessionkit.DefaultKeyPrefix)
	}
	if err := c.check(pos, set); err != nil {
		return err
	}
	if g.store == "" {
		return usagef("no store: give -store URL (or set SESSIONKIT_STORE)")
	}
	if g.timeout <= 0 {
		return usagef("-timeout must be positive")
	}
	base := ctx
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	e, err := open(ctx, g)
	if err != nil {
		return err
	}
	e.stderr, e.base, e.timeout = stderr, base, g.timeout
	defer e.close()
	if err := c.run(ctx, e, stdin, stdout); err != nil {
		return e.explain(name, err)
	}
	return nil
}

// command is one subcommand: its flags, a check of its arguments (before
// the store is opened; set names the flags given on the command line) and
// its work.
type command interface {
	flags(fs *flag.FlagSet)
	check(args []string, set map[string]bool) error
	run(ctx context.Context, e *env, stdin io.Reader, stdout io.Writer) error
}

// env is an open store and a Manager on it.
type env struct {
	m       *sessionkit.Manager
	store   sessionkit.Store
	prefix  string
	url     string // redacted
	backend string // "redis", "bbolt", …
	stderr  io.Writer
	close   func()
	// base is the command's context without -timeout, for waiting on the
	// operator; timeout is -timeout.
	base    context.Context
	timeout time.Duration
}

// backendName names the kind of store a URL opens, for messages.
func backendName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "store"
	}
	switch s := strings.ToLower(u.Scheme); s {
	case "rediss":
		return "redis"
	case "postgresql":
		return "postgres"
	default:
		return s
	}
}

func open(ctx context.Context, g *globals) (*env, error) {
	if err := checkBboltFile(g.store); err != nil {
		return nil, err
	}
	redacted := storeurl.Redact(g.store)
	opened := withClientTimeouts(g.store, g.timeout)
	store, closer, err := openStore(opened)
	if errors.Is(err, storeurl.ErrBadURL) {
		// The error quotes the URL opened: quote the operator's instead.
		return nil, usageError{msg: strings.ReplaceAll(err.Error(), storeurl.Redact(opened), redacted)}
	}
	if err != nil {
		return nil, err
	}
	if err := storeurl.Ping(ctx, store); err != nil {
		closer.Close()
		return nil, fmt.Errorf("session store %s does not answer: %w", redacted, err)
	}
	m, err := sessionkit.New(&sessionkit.Options{Store: store, KeyPrefix: g.prefix, UserHashKey: g.userHashKey})
	if err != nil {
		closer.Close()
		return nil, err
	}
	prefix := g.prefix
	if prefix == "" {
		prefix = sessionkit.DefaultKeyPrefix
	}
	return &env{m: m, store: store, prefix: prefix, url: redacted, backend: backendName(g.store), close: func() { closer.Close() }}, nil
}

// clientTimeouts are, for each scheme whose client storeurl sets a timeout
// for, the URL parameters that bound one request or reply (storeurl's
// names, with its defaults: 300 ms for redis and memcached, 1 s for
// postgres, sized for a web request). bbolt:// and memory:// have none.
// TestEverySchemeHasItsClientTimeouts fails for a scheme storeurl gains
// until it is listed here or there.
var clientTimeouts = map[string][]string{
	"redis":         {"read_timeout", "write_timeout"},
	"rediss":        {"read_timeout", "write_timeout"},
	"redis+cluster": {"read_timeout", "write_timeout"},
	"memcached":     {"timeout"},
	"postgres":      {"timeout"},
	"postgresql":    {"timeout"},
}

// withClientTimeouts returns rawURL with each client timeout it leaves out
// set to d, the command's -timeout. One command may ask much more of the
// store than a web request (a revoke -user of 60,000 sessions is one Redis
// script that runs for a while), and with the URL's defaults the client
// would give up on a reply that the store is still working on, while the
// work goes on. A timeout that the URL sets, even to nothing, stays as it
// is. A URL that storeurl cannot read is returned as it is, for storeurl
// to say why.
func withClientTimeouts(rawURL string, d time.Duration) string {
	scheme, _, ok := strings.Cut(rawURL, "://")
	params := clientTimeouts[strings.ToLower(scheme)]
	if !ok || len(params) == 0 {
		return rawURL
	}
	// Split the query where storeurl does: memcached:// (which net/url
	// cannot parse) at the first "?", any other as net/url does, after
	// taking off a fragment.
	head, frag, hasFrag := rawURL, "", false
	if !strings.EqualFold(scheme, "memcached") {
		head, frag, hasFrag = strings.Cut(rawURL, "#")
	}
	base, query, hasQuery := strings.Cut(head, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return rawURL
	}
	var add []string
	for _, p := range params {
		if !q.Has(p) {
			add = append(add, p+"="+d.String())
		}
	}
	if len(add) == 0 {
		return rawURL
	}
	if hasQuery && query != "" {
		query += "&"
	}
	out := base + "?" + query + strings.Join(add, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// checkBboltFile refuses a bbolt:// URL whose file does not exist: opening
// it would create an empty store and report that it holds no session.
func checkBboltFile(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, "bbolt") {
		return nil // storeurl reports a bad URL
	}
	path := u.Path
	if u.Host == "." || u.Host == ".." {
		path = u.Host + u.Path
	} else if u.Host != "" {
		return nil
	}
	if path == "" || path == "/" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("bbolt file %s: %w (a bbolt:// URL names the file the service uses)", path, err)
	}
	return nil
}

// explain adds to a failed command's error what an operator needs: which
// command failed, and which store lacks a capability.
func (e *env) explain(cmd string, err error) error {
	var ce capabilityError
	if errors.Is(err, errors.ErrUnsupported) && !errors.As(err, &ce) {
		return fmt.Errorf("%s: the %s store (%s) cannot do this: %w; docs/backends.md lists what each store can do", cmd, e.backend, e.url, err)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// capabilityError says that the store lacks an optional interface. It
// matches errors.ErrUnsupported.
type capabilityError struct{ msg string }

func (e capabilityError) Error() string        { return e.msg }
func (e capabilityError) Is(target error) bool { return target == errors.ErrUnsupported }

// need checks that the store has a capability before any work starts.
func (e *env) need(what string, ok bool, lacks string) error {
	if ok {
		return nil
	}
	return capabilityError{fmt.Sprintf("the %s store (%s) cannot %s: it %s (docs/backends.md says why)", e.backend, e.url, what, lacks)}
}

func (e *env) users() (sessionkit.Users, error) {
	u, ok := e.store.(sessionkit.Users)
	return u, e.need("index sessions by user", ok, "does not implement sessionkit.Users")
}

func (e *env) scanner() error {
	_, ok := e.store.(sessionkit.Scanner)
	return e.need("list its sessions", ok, "does not implement sessionkit.Scanner")
}

// ---- count

type countCmd struct{}

func (*countCmd) flags(*flag.FlagSet) {}

func (*countCmd) check(args []string, _ map[string]bool) error {
	if len(args) > 0 {
		return usagef("count takes no arguments")
	}
	return nil
}

func (*countCmd) run(ctx context.Context, e *env, _ io.Reader, stdout io.Writer) error {
	_, counts := e.store.(sessionkit.Counter)
	_, scans := e.store.(sessionkit.Scanner)
	if err := e.need("count its sessions", counts || scans, "implements neither sessionkit.Counter nor sessionkit.Scanner"); err != nil {
		return err
	}
	n, err := e.m.Count(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, n)
	return nil
}

// ---- ls

type lsCmd struct {
	user     string
	byUser   bool // -user was given
	asJSON   bool
	pageSize int
}

func (c *lsCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.user, "user", "", "list this user's sessions only")
	fs.BoolVar(&c.asJSON, "json", false, "one JSON object per session and line")
	fs.IntVar(&c.pageSize, "page", 500, "sessions asked of the store at a time")
}

func (c *lsCmd) check(args []string, set map[string]bool) error {
	if len(args) > 0 {
		return usagef("ls takes no arguments (did you mean ls -user %s?)", args[0])
	}
	if c.pageSize <= 0 {
		return usagef("-page must be positive")
	}
	if c.byUser = set["user"]; c.byUser {
		return checkUser(c.user)
	}
	return nil
}

// entry is one session as ls and show print it.
type entry struct {
	LogID    string    `json:"log_id"`
	ID       string    `json:"id,omitempty"`
	User     string    `json:"user,omitempty"`
	Device   string    `json:"device,omitempty"`
	IP       string    `json:"ip,omitempty"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
	Idle     string    `json:"idle_timeout"`
	Key      string    `json:"key"`
}

func newEntry(i sessionkit.SessionInfo) entry {
	return entry{
		LogID: sessionkit.KeyLogID(i.Key), ID: i.ID, User: i.User, Device: i.Device, IP: i.IP,
		Created: i.Created.UTC(), LastSeen: i.LastSeen().UTC(), Expires: i.Expires.UTC(),
		Idle: i.Idle.String(), Key: i.Key,
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// lister prints entries as a table or as JSON lines.
type lister struct {
	asJSON bool
	out    io.Writer
	tw     *tabwriter.Writer
	enc    *json.Encoder
	n      int
}

func newLister(out io.Writer, asJSON bool) *lister {
	l := &lister{asJSON: asJSON, out: out}
	if asJSON {
		l.enc = json.NewEncoder(out)
		return l
	}
	l.tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(l.tw, "LOG ID\tPUBLIC ID\tUSER\tDEVICE\tCREATED\tLAST SEEN\tEXPIRES")
	return l
}

func (l *lister) add(i sessionkit.SessionInfo) error {
	l.n++
	e := newEntry(i)
	if l.asJSON {
		return l.enc.Encode(e)
	}
	_, err := fmt.Fprintf(l.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(e.LogID), dash(e.ID), dash(e.User),
		dash(e.Device), stamp(e.Created), stamp(e.LastSeen), stamp(e.Expires))
	return err
}

func (l *lister) flush() error {
	if l.tw != nil {
		return l.tw.Flush()
	}
	return nil
}

func (c *lsCmd) run(ctx context.Context, e *env, _ io.Reader, stdout io.Writer) error {
	l := newLister(stdout, c.asJSON)
	if c.byUser {
		infos, err := userSessions(ctx, e, c.user)
		if err != nil {
			return err
		}
		for _, i := range infos {
			if err := l.add(i); err != nil {
				return err
			}
		}
		return l.flush()
	}
	if err := e.scanner(); err != nil {
		return err
	}
	// A store may return a session twice in one walk (Redis SCAN does
	// when its table grows meanwhile): print it once.
	seen := map[string]struct{}{}
	cursor := ""
	for {
		page, next, err := e.m.Scan(ctx, cursor, c.pageSize)
		if err != nil {
			return err
		}
		for _, i := range page {
			if _, dup := seen[i.Key]; dup {
				continue
			}
			seen[i.Key] = struct{}{}
			if err := l.add(i); err != nil {
				return err
			}
		}
		if err := l.flush(); err != nil { // a page at a time: a long walk shows progress
			return err
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// userSessions lists user's live sessions, oldest first, with their
// storage keys (so with log IDs), without refreshing them. It asks the
// store's index directly: Manager.UserSessions gives no key.
func userSessions(ctx context.Context, e *env, user string) ([]sessionkit.SessionInfo, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	u, err := e.users()
	if err != nil {
		return nil, err
	}
	infos, err := u.UserSessions(ctx, e.m.UserIndex(user))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(infos, func(a, b sessionkit.SessionInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return infos, nil
}

// checkUser refuses, as a usage error, a user ID that no session can be
// bound to (the Manager's rules: see sessionkit.ErrInvalidUser).
func checkUser(user string) error {
	if user == "" {
		return usagef("empty user ID (-user '')")
	}
	if err := sessionkit.CheckUserID(user); err != nil {
		// The Manager's own rule, not a copy of it.
		return usagef("%s", strings.TrimPrefix(err.Error(), "sessionkit: "))
	}
	return nil
}

// ---- show

type showCmd struct {
	id   string
	meta bool
}

func (c *showCmd) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.meta, "meta", false, "print what the store keeps about the session, not its fields, and leave it untouched")
}

func (c *showCmd) check(args []string, _ map[string]bool) error {
	if len(args) != 1 || args[0] == "" {
		return usagef("show takes one session ID (public ID or log ID)")
	}
	c.id = args[0]
	return nil
}

// shown is what show prints: the session and, unless -meta, its fields.
type shown struct {
	entry
	Fields map[string]any `json:"fields,omitempty"`
}

func (c *showCmd) run(ctx context.Context, e *env, _ io.Reader, stdout io.Writer) error {
	if err := e.scanner(); err != nil {
		return err
	}
	// The store may renew the session between Find and GetAll (a login in
	// the meantime): find it again under its new key, a few times.
	for range 3 {
		info, err := find(ctx, e, c.id)
		if err != nil {
			return err
		}
		out := shown{entry: newEntry(info)}
		if !c.meta {
			fields, err := e.store.GetAll(ctx, info.Key)
			if errors.Is(err, sessionkit.ErrRenewed) {
				continue
			}
			if errors.Is(err, sessionkit.ErrNotFound) {
				return fmt.Errorf("session %s ended while it was being read: %w", c.id, err)
			}
			if err != nil {
				return err
			}
			out.Fields = decodeFields(fields)
			if out.Fields == nil {
				out.Fields = map[string]any{}
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return fmt.Errorf("session %s was renewed three times while it was being read; try again", c.id)
}

// decodeFields turns stored values into JSON for printing: a value that is
// JSON (what the default codec writes) as itself, anything else (a hand
// edit, another codec's bytes) as a string.
func decodeFields(fields map[string][]byte) map[string]any {
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]any, len(fields))
	for name, v := range fields {
		if json.Valid(v) {
			out[name] = json.RawMessage(v)
		} else {
			out[name] = string(v)
		}
	}
	return out
}

// find returns the live session whose public ID or log ID is id.
func find(ctx context.Context, e *env, id string) (sessionkit.SessionInfo, error) {
	info, err := e.m.Find(ctx, id)
	if errors.Is(err, sessionkit.ErrNotFound) {
		return info, fmt.Errorf("no live session has the public ID or log ID %q under the prefix %q", id, e.prefix)
	}
	return info, err
}

// ---- revoke

type revokeCmd struct {
	id, user, except string
	all, yes         bool
}

func (c *revokeCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.user, "user", "", "revoke every session of this user")
	fs.StringVar(&c.except, "except", "", "with -user: keep the session with this public ID or log ID")
	fs.BoolVar(&c.all, "all", false, "revoke every session under the prefix")
	fs.BoolVar(&c.yes, "yes", false, "with -all: do not ask for confirmation")
}

func (c *revokeCmd) check(args []string, set map[string]bool) error {
	if len(args) > 1 {
		return usagef("revoke takes at most one session ID, got %d", len(args))
	}
	if len(args) == 1 {
		c.id = args[0]
		if c.id == "" {
			return usagef("empty session ID")
		}
	}
	if set["user"] {
		if err := checkUser(c.user); err != nil {
			return err
		}
	}
	// "-except ''" would keep nothing: every session of the user would end.
	if set["except"] && c.except == "" {
		return usagef("empty -except: give the public ID or log ID of the session to keep, or leave -except out to end them all")
	}
	modes := 0
	for _, given := range []bool{c.id != "", c.user != "", c.all} {
		if given {
			modes++
		}
	}
	switch {
	case modes == 0:
		return usagef("revoke what? give a session ID, -user U or -all")
	case modes > 1:
		return usagef("revoke takes one of: a session ID, -user U, -all")
	case c.except != "" && c.user == "":
		return usagef("-except goes with -user")
	case c.yes && !c.all:
		return usagef("-yes goes with -all")
	}
	return nil
}

func (c *revokeCmd) run(ctx context.Context, e *env, stdin io.Reader, stdout io.Writer) error {
	switch {
	case c.all:
		return c.revokeAll(ctx, e, stdin, stdout)
	case c.user != "":
		return c.revokeUser(ctx, e, stdout)
	}
	if err := e.scanner(); err != nil {
		return err
	}
	info, err := find(ctx, e, c.id)
	if err != nil {
		return err
	}
	if info.User != "" {
		// Through the user's index, so that it is cleaned too.
		err = e.m.RevokeSession(ctx, info.User, info.ID)
		if errors.Is(err, sessionkit.ErrNotFound) {
			return fmt.Errorf("session %s (log ID %s) of user %q ended before it could be revoked", dash(info.ID), sessionkit.KeyLogID(info.Key), info.User)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked session %s (log ID %s) of user %q\n", info.ID, sessionkit.KeyLogID(info.Key), info.User)
		return nil
	}
	// Destroy follows a Renew marker: a session renewed since Find still ends.
	if err := e.store.Destroy(ctx, info.Key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked session with log ID %s (bound to no user)\n", sessionkit.KeyLogID(info.Key))
	return nil
}

func (c *revokeCmd) revokeUser(ctx context.Context, e *env, stdout io.Writer) error {
	if _, err := e.users(); err != nil {
		return err
	}
	except := ""
	if c.except != "" {
		// A mistyped -except would end the very session meant to stay:
		// check that it is one of the user's, and turn a log ID into the
		// public ID.
		infos, err := userSessions(ctx, e, c.user)
		if err != nil {
			return err
		}
		for _, i := range infos {
			if i.ID == c.except || sessionkit.KeyLogID(i.Key) == c.except {
				except = i.ID
			}
		}
		if except == "" {
			return fmt.Errorf("user %q has no live session with the public ID or log ID %q: nothing revoked", c.user, c.except)
		}
	}
	n, err := e.m.RevokeUser(ctx, c.user, except)
	if err != nil {
		return err
	}
	if except != "" {
		fmt.Fprintf(stdout, "revoked %s of user %q, kept %s\n", sessions(n), c.user, except)
	} else {
		fmt.Fprintf(stdout, "revoked %s of user %q\n", sessions(n), c.user)
	}
	return nil
}

// readLine reads one line from r, or returns ctx's error once ctx is done
// (an interrupt), without waiting for the line.
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ch <- answer{line, err}
	}()
	select {
	case a := <-ch:
		return a.line, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func sessions(n int) string {
	if n == 1 {
		return "1 session"
	}
	return fmt.Sprintf("%d sessions", n)
}

func (c *revokeCmd) revokeAll(ctx context.Context, e *env, stdin io.Reader, stdout io.Writer) error {
	if err := e.scanner(); err != nil {
		return err
	}
	prefix := e.prefix
	if !c.yes {
		n, err := e.m.Count(ctx)
		if err != nil {
			return err
		}
		// The question goes to stderr, so that stdout holds the outcome only.
		fmt.Fprintf(e.stderr, "This ends all %s under the prefix %q in %s: everyone is logged out.\nType yes to go on: ", sessions(n), prefix, e.url)
		answer, err := readLine(e.base, stdin)
		if err != nil {
			fmt.Fprintln(e.stderr)
			return fmt.Errorf("no answer: nothing revoked: %w", err)
		}
		if answer = strings.ToLower(strings.TrimSpace(answer)); answer != "yes" {
			fmt.Fprintln(e.stderr)
			return errors.New("not confirmed: nothing revoked (give -yes to skip the question)")
		}
		// The operator may have taken a while: -timeout counts from here.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(e.base, e.timeout)
		defer cancel()
	}
	n, err := e.m.RevokeAll(ctx)
	if err != nil {
		return fmt.Errorf("after ending %s: %w", sessions(n), err)
	}
	fmt.Fprintf(stdout, "revoked %s under the prefix %q\n", sessions(n), prefix)
	return nil
}

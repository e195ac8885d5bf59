package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/images/cache"
	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() {
	registerImages(newImagesListCmd)
	registerImages(newImagesPullCmd)
	registerImages(newImagesVerifyCmd)
	registerImages(newImagesPruneCmd)
}

// cacheFlags are the flags every image command shares.
type cacheFlags struct {
	dir, baseURL, keyring string
}

func (f *cacheFlags) add(cmd *cobra.Command, feeds bool) {
	cmd.Flags().StringVar(&f.dir, "cache-dir", "", "the image cache folder (default: $"+cache.EnvDir+", else ~/.cache/kiln/images)")
	if feeds {
		cmd.Flags().StringVar(&f.baseURL, "base-url", "", "a mirror of the release feeds: URL/streams/<stream>.json (Fedora CoreOS), URL/<channel>/amd64-usr/<version|current>/ (Flatcar)")
		cmd.Flags().StringVar(&f.keyring, "keyring", "", "armored OpenPGP public keys that replace the embedded signing keys")
	}
}

// open makes the cache the flags describe.
func (f *cacheFlags) open() (*cache.Cache, error) {
	dir := f.dir
	if dir == "" {
		d, err := cache.DefaultDir()
		if err != nil {
			return nil, exitcode.UserErr(err)
		}
		dir = d
	}
	c := &cache.Cache{Dir: dir, Feed: &feed.Client{BaseURL: strings.TrimRight(f.baseURL, "/")}}
	if f.keyring != "" {
		k, err := feed.ReadKeyring(f.keyring)
		if err != nil {
			return nil, exitcode.UserErr(fmt.Errorf("--keyring: %w", err))
		}
		c.Keys = k
	}
	return c, nil
}

// imagesErr makes the errors a user can act on exit 1.
func imagesErr(err error) error {
	for _, e := range []error{catalog.ErrUnknownOS, catalog.ErrUnknownChannel, catalog.ErrUnknownPlatform,
		feed.ErrFeed, feed.ErrNotPublished, feed.ErrChecksum, feed.ErrSignature, feed.ErrNoKeys,
		cache.ErrCorrupt, cache.ErrDownload, cache.ErrNotCached, cache.ErrBadCache} {
		if errors.Is(err, e) {
			return exitcode.UserErr(err)
		}
	}
	return err
}

func newImagesListCmd() *cobra.Command {
	var (
		cf              cacheFlags
		osName, channel string
		offline         bool
	)
	cmd := &cobra.Command{
		Use:   "list [--os OS] [--channel C]",
		Short: "Channels and their current versions, and what the image cache holds",
		Long: `List asks each channel's release feed for its current version (or the mirror of --base-url).
When a feed cannot be reached, or with --offline, the newest version in the cache stands in, and
the SOURCE column says so. Then it lists the cache: every pulled version and platform, its size,
and whether <os>/<channel>/ points at it (CURRENT).`,
		Example: `  kiln images list
  kiln images list --os fcos --channel stable --base-url http://mirror.lan/fcos
  kiln images list --offline`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.open()
			if err != nil {
				return err
			}
			oses := catalog.All()
			if osName != "" {
				o, err := catalog.Get(osName)
				if err != nil {
					return exitcode.UserErr(err)
				}
				oses = []*catalog.OS{o}
			}
			type row struct {
				os, channel, version, source string
				err                          error
			}
			var rows []*row
			for _, o := range oses {
				chans := o.Channels
				if channel != "" {
					if err := o.Channel(channel); err != nil {
						return exitcode.UserErr(err)
					}
					chans = []string{channel}
				}
				for _, ch := range chans {
					rows = append(rows, &row{os: o.Name, channel: ch})
				}
			}
			entries, err := c.Entries()
			if err != nil {
				return err
			}
			if !offline {
				fc := *c.Feed
				fc.HTTP = &http.Client{Timeout: 15 * time.Second}
				var wg sync.WaitGroup
				for _, r := range rows {
					wg.Go(func() {
						r.version, r.err = fc.Current(cmd.Context(), catalog.Of(r.os), r.channel)
						r.source = "feed " + catalog.Of(r.os).FeedURL(r.channel, c.Feed.BaseURL)
					})
				}
				wg.Wait()
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OS\tCHANNEL\tVERSION\tSOURCE")
			for _, r := range rows {
				if offline || r.err != nil {
					if r.err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s %s: %v\n", r.os, r.channel, r.err)
					}
					r.version, r.source = "-", "none (not reachable, nothing cached)"
					for _, e := range entries { // newest first
						if e.OS == r.os && e.Channel == r.channel {
							r.version, r.source = e.Version, "cache (offline)"
							break
						}
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.os, r.channel, r.version, r.source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "\ncache %s:\n", c.Dir)
			if len(entries) == 0 {
				fmt.Fprintln(out, "  (empty)")
				return nil
			}
			tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OS\tCHANNEL\tVERSION\tPLATFORM\tSIZE\tCURRENT\tPULLED")
			for _, e := range entries {
				if (osName != "" && e.OS != osName) || (channel != "" && e.Channel != channel) {
					continue
				}
				cur := ""
				if e.Current {
					cur = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.OS, e.Channel, e.Version, e.Platform, cache.BytesString(e.Size()), cur, e.Pulled.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cf.add(cmd, true)
	cmd.Flags().StringVar(&osName, "os", "", "only this OS ("+strings.Join(catalog.Names(), ", ")+")")
	cmd.Flags().StringVar(&channel, "channel", "", "only this channel")
	cmd.Flags().BoolVar(&offline, "offline", false, "do not ask the feeds; show what the cache holds")
	return cmd
}

func newImagesPullCmd() *cobra.Command {
	var (
		cf                                 cacheFlags
		osName, channel, platform, version string
	)
	cmd := &cobra.Command{
		Use:   "pull --os OS --channel C --platform P [--version V]",
		Short: "Download, verify and cache the images of a platform",
		Long: `Pull downloads the artifacts of a platform (pxe: kernel and initramfs, and Fedora CoreOS's
rootfs; qemu: a disk image; vmware: an OVA; iso: a live ISO) of a channel's current version, or
of --version, from the OS's release feed or the mirror of --base-url. Each is checked against the
digest its feed publishes and its detached OpenPGP signature (the project's signing keys are
embedded; --keyring replaces them), and compressed ones are decompressed and checked against the
published uncompressed digest. An interrupted download resumes where it stopped. Only when every
artifact passes do they enter the cache; a refused pull leaves nothing behind.

The cache keeps each file once under store/sha256/<digest> and links it as
<os>/<channel>/<version>/<name> and <os>/<channel>/<name> (the last pulled version): the layout
that kiln pxe serve --assets reads, and that it uses when --assets is not given.`,
		Example: `  kiln images pull --os flatcar --channel stable --platform pxe
  kiln images pull --os fcos --channel stable --platform qemu --base-url http://mirror.lan/fcos
  kiln images pull --os flatcar --channel beta --platform vmware --version 4230.1.0 --keyring keys.asc`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := catalog.Get(osName)
			if err != nil {
				return exitcode.UserErr(fmt.Errorf("--os: %w", err))
			}
			if channel == "" {
				channel = o.DefaultChannel
			}
			if platform == "" {
				return exitcode.UserErr(fmt.Errorf("--platform: choose one of %s", strings.Join(o.PlatformNames(), ", ")))
			}
			c, err := cf.open()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			c.Progress = cache.NewProgress(out)
			// An interrupted pull removes its partial files before it exits.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			e, err := c.Pull(ctx, o.Name, channel, platform, version)
			if err != nil {
				return imagesErr(err)
			}
			fmt.Fprintf(out, "pulled %s %s %s %s (%s):\n", e.OS, e.Channel, e.Version, e.Platform, cache.BytesString(e.Size()))
			for _, f := range e.Files {
				fmt.Fprintf(out, "  %s\t%s\n", f.Role, filepath.Join(c.Dir, e.OS, e.Channel, f.Name))
			}
			return nil
		},
	}
	cf.add(cmd, true)
	cmd.Flags().StringVar(&osName, "os", "", "the OS ("+strings.Join(catalog.Names(), ", ")+")")
	cmd.Flags().StringVar(&channel, "channel", "", "the channel or stream (default: the OS's default, stable)")
	cmd.Flags().StringVar(&platform, "platform", "", "what to download: "+strings.Join(platformNames(), ", "))
	cmd.Flags().StringVar(&version, "version", "", "a release version (default: the channel's current one)")
	_ = cmd.MarkFlagRequired("os")
	return cmd
}

func newImagesVerifyCmd() *cobra.Command {
	var cf cacheFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every cached file against its digest",
		Long: `Verify reads every file of the image cache again and checks it against the SHA-256 it is
stored under, and every pulled version's links against the digests recorded when it was pulled.
It prints what does not match and exits 1; pull the version again to repair it.`,
		Example: `  kiln images verify
  kiln images verify --cache-dir /srv/kiln`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.open()
			if err != nil {
				return err
			}
			probs, err := c.Verify(cmd.Context())
			if err != nil {
				return err
			}
			for _, p := range probs {
				fmt.Fprintf(cmd.ErrOrStderr(), "error: %s\n", p)
			}
			if len(probs) > 0 {
				return exitcode.UserErr(fmt.Errorf("%w: %d problems", cache.ErrBadCache, len(probs)))
			}
			entries, err := c.Entries()
			if err != nil {
				return err
			}
			files := 0
			for _, e := range entries {
				files += len(e.Files)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d files of %d pulls in %s\n", files, len(entries), c.Dir)
			return nil
		},
	}
	cf.add(cmd, false)
	return cmd
}

func newImagesPruneCmd() *cobra.Command {
	var (
		cf   cacheFlags
		keep int
	)
	cmd := &cobra.Command{
		Use:   "prune [--keep N]",
		Short: "Remove old versions from the image cache",
		Long: `Prune keeps, per OS and channel, the N newest versions (and always the one <os>/<channel>/
points at), removes the others, then the stored files no version refers to.`,
		Example: `  kiln images prune
  kiln images prune --keep 2`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep < 0 {
				return exitcode.UserErr(fmt.Errorf("--keep %d: expected 0 or more", keep))
			}
			c, err := cf.open()
			if err != nil {
				return err
			}
			removed, freed, err := c.Prune(keep)
			for _, r := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "freed %s\n", cache.BytesString(freed))
			return nil
		},
	}
	cf.add(cmd, false)
	cmd.Flags().IntVar(&keep, "keep", 1, "how many versions to keep per OS and channel")
	return cmd
}

// imageAssets returns the image cache folder for kiln pxe serve when --assets is not given, once
// it holds the pxe artifacts of the cluster's OS and channel.
func imageAssets(osName, channel string) (string, error) {
	dir, err := cache.DefaultDir()
	if err != nil {
		return "", err
	}
	if _, err := (&cache.Cache{Dir: dir}).Lookup(osName, channel, "pxe"); err != nil {
		return "", fmt.Errorf("no --assets, and %w", err)
	}
	return dir, nil
}

// platformNames lists the platforms of every OS of the catalog.
func platformNames() []string {
	var names []string
	for _, o := range catalog.All() {
		for _, p := range o.PlatformNames() {
			if !slices.Contains(names, p) {
				names = append(names, p)
			}
		}
	}
	return names
}

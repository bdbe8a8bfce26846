// Command ferretdb serves the MongoDB wire protocol over PostgreSQL or SQLite for Fabu's local stack.
//
// FerretDB's own cmd/ferretdb, built outside its repository, panics on a version
// file that only its release tooling writes; its embeddable package does not,
// so this small program runs that instead.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "", "SQLite directory URL, ending in /")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL URL (instead of SQLite)")
	flag.Parse()

	handler := "sqlite"
	if *postgresqlURL != "" {
		handler = "postgresql"
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	server, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Handler:       handler,
		SQLiteURL:     *sqliteURL,
		PostgreSQLURL: *postgresqlURL,
		Logger:        logger,
	})
	if err != nil {
		logger.Error("cannot start", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := server.Run(ctx); err != nil {
		logger.Error("stopped", "error", err)
		os.Exit(1)
	}
}

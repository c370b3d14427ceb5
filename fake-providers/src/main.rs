//! `fake-providers`: runs the Drive + Dropbox emulator on an address and prints
//! the folder URLs to paste and the base URLs to configure. (A developer tool:
//! the banner goes to stdout on purpose; logs go through `tracing`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use fake_providers::{FakeProviders, FaultConfig, Folder, Generate, ImageKind};

const USAGE: &str = "\
fake-providers — Google Drive v3 + Dropbox v2 emulator for Vitrine's import

USAGE:
    fake-providers [OPTIONS]

OPTIONS:
    --bind ADDR          address to listen on (default: 127.0.0.1:9900)
    --generate N         share a generated folder of N images (default: 100 unless --dir)
    --size SIZE          image size in B, KiB or MiB (default: 50KiB)
    --types LIST         png,jpeg (default: both, in turn)
    --subfolders N       spread the images over N subfolders too (default: 0)
    --depth D            nest the subfolders D levels deep: N in the root, N in each
                         of those, … (default: every second one in the previous)
    --docs N             add N Google Docs (Drive only; not downloadable)
    --shortcuts N        add N shortcuts to images outside the folder (Drive only)
    --non-images N       add N PDFs
    --broken N           add N broken files (broken-001.jpg…: typed as JPEG, not an image)
    --seed N             generator seed: same seed, same bytes (default: 1)
    --dir PATH           also share the directory tree at PATH
    --resource-key       the Drive folders need their resource key
    --latency-ms MS      added to every emulated request (default: 0)
    --drive-key KEY      accept only this Drive API key (default: any)
    --dropbox-token TOK  accept only this Dropbox bearer token (default: any)
    --no-prewarm         do not compute every checksum in the background at start
    -h, --help           this text

Every folder is shared over both Drive and Dropbox. Faults can be changed while
it runs: POST /_fake/faults, GET /_fake/stats, POST /_fake/reset (see README.md).";

#[derive(Debug)]
struct Options {
    bind: SocketAddr,
    generate: Option<usize>,
    size: usize,
    types: Vec<ImageKind>,
    subfolders: usize,
    depth: Option<usize>,
    docs: usize,
    shortcuts: usize,
    non_images: usize,
    broken: usize,
    seed: u64,
    dir: Option<PathBuf>,
    resource_key: bool,
    latency_ms: u64,
    drive_key: Option<String>,
    dropbox_token: Option<String>,
    prewarm: bool,
}

fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .with_context(|| format!("`{text}` is not a size"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mib" => 1024 * 1024,
        other => bail!("unknown size unit `{other}` in `{text}` (B, KB, KiB, MB, MiB)"),
    };
    Ok(n * mult)
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>> {
    let mut o = Options {
        bind: "127.0.0.1:9900".parse()?,
        generate: None,
        size: 50 * 1024,
        types: vec![ImageKind::Png, ImageKind::Jpeg],
        subfolders: 0,
        depth: None,
        docs: 0,
        shortcuts: 0,
        non_images: 0,
        broken: 0,
        seed: 1,
        dir: None,
        resource_key: false,
        latency_ms: 0,
        drive_key: None,
        dropbox_token: None,
        prewarm: true,
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bind" => o.bind = value()?.parse().context("--bind")?,
            "--generate" => o.generate = Some(value()?.parse().context("--generate")?),
            "--size" => o.size = parse_size(&value()?)?,
            "--types" => {
                o.types = value()?
                    .split(',')
                    .map(|t| match t.trim().to_ascii_lowercase().as_str() {
                        "png" => Ok(ImageKind::Png),
                        "jpeg" | "jpg" => Ok(ImageKind::Jpeg),
                        other => bail!("--types: unknown type `{other}` (png, jpeg)"),
                    })
                    .collect::<Result<_>>()?
            }
            "--subfolders" => o.subfolders = value()?.parse().context("--subfolders")?,
            "--depth" => o.depth = Some(value()?.parse().context("--depth")?),
            "--broken" => o.broken = value()?.parse().context("--broken")?,
            "--docs" => o.docs = value()?.parse().context("--docs")?,
            "--shortcuts" => o.shortcuts = value()?.parse().context("--shortcuts")?,
            "--non-images" => o.non_images = value()?.parse().context("--non-images")?,
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--resource-key" => o.resource_key = true,
            "--latency-ms" => o.latency_ms = value()?.parse().context("--latency-ms")?,
            "--drive-key" => o.drive_key = Some(value()?),
            "--dropbox-token" => o.dropbox_token = Some(value()?),
            "--no-prewarm" => o.prewarm = false,
            other => bail!("unknown option `{other}` (see --help)"),
        }
    }
    if o.generate.is_none() && o.dir.is_none() {
        o.generate = Some(100);
    }
    Ok(Some(o))
}

fn build(o: &Options) -> Result<FakeProviders> {
    let mut folders = Vec::new();
    if let Some(n) = o.generate {
        let mut g = Generate::images(n)
            .size(o.size)
            .types(&o.types)
            .subfolders(o.subfolders)
            .docs(o.docs)
            .shortcuts(o.shortcuts)
            .non_images(o.non_images)
            .broken(o.broken)
            .seed(o.seed);
        if let Some(depth) = o.depth {
            g = g.depth(depth);
        }
        folders.push(Folder::generated(g).name(format!("{n} generated images")));
    }
    if let Some(dir) = &o.dir {
        if !dir.is_dir() {
            bail!("--dir {}: not a directory", dir.display());
        }
        folders.push(Folder::directory(dir));
    }
    let mut builder = FakeProviders::builder().faults(FaultConfig::default().latency(o.latency_ms));
    for folder in folders {
        let drive = if o.resource_key {
            folder.clone().with_resource_key()
        } else {
            folder.clone()
        };
        builder = builder.drive_folder(drive).dropbox_folder(folder);
    }
    if let Some(key) = &o.drive_key {
        builder = builder.drive_api_key(key);
    }
    if let Some(token) = &o.dropbox_token {
        builder = builder.dropbox_token(token);
    }
    builder.build().context("cannot build the folders")
}

async fn run(o: Options) -> Result<()> {
    let fake = build(&o)?;
    let listener = tokio::net::TcpListener::bind(o.bind)
        .await
        .with_context(|| format!("cannot bind {}", o.bind))?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut banner = String::new();
    banner
        .push_str("fake-providers is serving Google Drive v3 and Dropbox v2 on one base URL.\n\n");
    banner.push_str("Configure:\n");
    for var in [
        "GOOGLE_DRIVE_API_BASE",
        "DROPBOX_API_BASE",
        "DROPBOX_CONTENT_BASE",
    ] {
        banner.push_str(&format!("  {var}={base}\n"));
    }
    banner.push_str(&format!(
        "  GOOGLE_API_KEY={}\n  DROPBOX_ACCESS_TOKEN={}\n\nFolder URLs to paste:\n",
        o.drive_key.as_deref().unwrap_or("fake-key"),
        o.dropbox_token.as_deref().unwrap_or("fake-token")
    ));
    for f in fake.drive_folders() {
        banner.push_str(&format!("  Google Drive: {}\n", f.url));
    }
    for l in fake.dropbox_links() {
        banner.push_str(&format!("  Dropbox:      {}\n", l.url));
    }
    banner.push_str(&format!(
        "\nAdmin: {base}/_fake/faults  {base}/_fake/stats  {base}/_fake/reset  {base}/_fake/folders\n"
    ));
    print!("{banner}");
    let running = fake.serve_on(listener)?;
    if o.prewarm {
        // In the background: requests are served meanwhile (a listing computes
        // what it needs itself), and a benchmark can start at once.
        let fake = fake.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match fake.prewarm().await {
                Ok(files) => tracing::info!(
                    files,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "checksums of every file computed"
                ),
                Err(e) => tracing::error!(error = %e, "cannot compute checksums"),
            }
        });
    }
    service_kit::http::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fake_providers=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-providers: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fake-providers: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-providers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50KiB").unwrap(), 51_200);
        assert_eq!(parse_size("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn args() {
        let args = "--bind 127.0.0.1:0 --generate 10000 --size 50KiB --latency-ms 20 --seed 7";
        let o = parse_args(args.split(' ').map(String::from))
            .unwrap()
            .unwrap();
        assert_eq!(o.generate, Some(10_000));
        assert_eq!(o.size, 51_200);
        assert_eq!(o.latency_ms, 20);
        assert_eq!(o.seed, 7);
        assert_eq!(o.depth, None);
        assert_eq!(o.broken, 0);
        let o = parse_args(
            "--subfolders 3 --depth 2 --broken 1"
                .split(' ')
                .map(String::from),
        )
        .unwrap()
        .unwrap();
        assert_eq!((o.subfolders, o.depth, o.broken), (3, Some(2), 1));
        let fake = build(&o).unwrap();
        assert!(fake.nodes().iter().any(|n| n.name == "broken-001.jpg"));
        assert!(fake
            .nodes()
            .iter()
            .any(|n| n.is_folder() && n.path == "/Folder 02/Folder 03"));
        assert!(parse_args(["--bogus".to_owned()].into_iter()).is_err());
        assert!(parse_args(["--help".to_owned()].into_iter())
            .unwrap()
            .is_none());
    }
}

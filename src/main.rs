use clap::Parser;

fn main() {
    let cli = consentgate::cli::Cli::parse();
    match consentgate::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("consentgate: {e:#}");
            std::process::exit(1);
        }
    }
}

fn main() {
    std::process::exit(tok::commands::main());
}

fn main() {
    print!("{}", pgherd_api::crd::to_yaml().unwrap());
}

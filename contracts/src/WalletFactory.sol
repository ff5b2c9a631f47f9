// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {TestWallet1271} from "./TestWallet1271.sol";

/// @title WalletFactory
/// @notice CREATE2 factory for TestWallet1271, so a wallet's address is known before it exists.
/// That is what EIP-6492 counterfactual signatures need: the signature carries the factory call
/// that deploys the wallet.
contract WalletFactory {
    event WalletDeployed(address wallet, address owner, bytes32 salt);

    /// @notice Deploys the wallet for (`owner`, `salt`), or returns it if it already exists, so
    /// that replaying an EIP-6492 prepare call never reverts.
    function deploy(address owner, bytes32 salt) external returns (address wallet) {
        wallet = predict(owner, salt);
        if (wallet.code.length > 0) return wallet;
        TestWallet1271 created = new TestWallet1271{salt: salt}(owner);
        require(address(created) == wallet, "WalletFactory: unexpected address");
        emit WalletDeployed(wallet, owner, salt);
    }

    /// @notice The address `deploy(owner, salt)` creates the wallet at.
    function predict(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(TestWallet1271).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash)))));
    }
}
